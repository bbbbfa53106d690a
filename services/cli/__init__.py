"""The `clipspot` command line: one thin module per subcommand, wired in main.py."""
