"""Starting, watching, restarting and stopping agent processes."""
