"""Library mode: `ironrt.protect` runs the governance kernel in-process."""
