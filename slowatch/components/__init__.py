"""The daemon's small parts, each on its own: the spec watcher, Grafana provisioning, the status
page's budget history. ``slowatch.daemon`` wires them to the cycle."""
