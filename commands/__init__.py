"""Pipeline commands of the `jointav` CLI, one module each with a `register(subparsers)`."""
