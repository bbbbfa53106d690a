"""ClipSpot's serving layer: gRPC (embedded and Ray Serve), the Redis prompt cache and the CLI.

`services` may import `pipeline`; `pipeline` never imports `services`.
"""
