"""The agents `ironrt demo` runs: plain scripts, shipped inside the package so that the
demo works from a `pip install`. They are started as processes, never imported."""
