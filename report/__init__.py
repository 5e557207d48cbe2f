"""Reports and inspection: the HTML/terminal report of a built corpus and `inspect`."""
