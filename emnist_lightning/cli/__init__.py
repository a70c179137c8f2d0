"""The commands, one thin module each: compose the config of conf/<name>.yaml, call the library, fail in one line."""
