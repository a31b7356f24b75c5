"""The dialects chatd speaks, one module per wire format, both ends of it together.

Strategy: a module holds a wire format's server end (its :class:`~chatproto.Door`: parse
what a client sends, render answers, streams and errors) and, where an upstream speaks the
format, its client end (the codec). Modules are imported on first use, so
``import chatproto`` stays cheap.
"""
