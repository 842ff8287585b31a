"""Languages built on the machine's own toolchain, one module each: what their files ask for, how they build, and
what starts the result; the runtime a start command names, and the languages not built here with the line each gets."""
