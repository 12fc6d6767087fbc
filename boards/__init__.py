"""Board profiles (TOML), shipped inside the svt_deploy package as data."""
