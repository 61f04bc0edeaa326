"""The Jobylon Push API emulator: `SandboxServer` for tests and the demo, `serve_forever` for
`connector sandbox`."""

from connector.sandbox.server import FAULT_KINDS, SandboxServer, serve_forever

__all__ = ["FAULT_KINDS", "SandboxServer", "serve_forever"]
