"""The web console (issue 23): server-rendered pages under ``/console/``, served by the control plane itself.

Every page reads and changes things through ``apicall.Api``, an in-process call into the same API with the
signed-in user as the caller: the same routes, permission checks, audit and messages as the REST API and the CLI.
"""
