"""One module per part of deploy.toml, each reading its tables in the order of its errors."""
