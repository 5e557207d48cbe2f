"""Operating a build: sizing a profile (`pipeline plan`) and the kill -9 fault drill."""
