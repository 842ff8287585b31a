"""Languages built on the machine's own toolchain, one module each: what their files ask for, how they build,
and what starts the result."""
