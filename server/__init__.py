"""chatd's server: configuration, the ASGI app hypercorn serves, and the ``chatd`` command.

Strategy: the I/O shell around the sans-IO core. Importing this package imports nothing
heavy; ``server.cli`` pulls in hypercorn, a transport and prometheus_client only when the
command needs them, so ``chatd`` starts fast.
"""
