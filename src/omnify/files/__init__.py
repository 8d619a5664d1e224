"""Client brand files: content sniffing, image processing (library layer), and later the domain."""
