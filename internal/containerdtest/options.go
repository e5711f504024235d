package containerdtest

import (
	"fmt"
	"path/filepath"
)

// Option turns on a part of containerd that Start leaves off by default.
type Option func(*options)

type options struct {
	tasks bool
	// criHostsDir is the CRI plugin's registry config_path; "" leaves the CRI plugin off.
	criHostsDir string
}

// WithTasks turns on the task service and the runc v2 runtime, so `ctr run` can start containers (with
// containerd-shim-runc-v2 and runc from PATH, which the Debian package installs). Default off: pulls need neither.
func WithTasks() Option { return func(o *options) { o.tasks = true } }

// WithCRI turns on the CRI plugin (and tasks, which it needs) on the daemon's socket, the way a node runs it:
// registry config_path = hostsDir, so kubelet's PullImage reads hosts.toml files there. It unpacks with the
// native snapshotter and never needs CNI for image calls. Default off.
func WithCRI(hostsDir string) Option {
	return func(o *options) { o.tasks, o.criHostsDir = true, hostsDir }
}

// enables reports whether plugin must stay on for these options.
func (o options) enables(plugin string) bool {
	switch plugin {
	case "io.containerd.runtime.v2.task", "io.containerd.service.v1.tasks-service", "io.containerd.grpc.v1.tasks",
		"io.containerd.monitor.v1.cgroups", "io.containerd.runtime.v1.linux":
		return o.tasks
	case "io.containerd.grpc.v1.cri":
		return o.criHostsDir != ""
	}
	return false
}

// pluginConfig is the [plugins] part of the config for these options.
func (o options) pluginConfig(dir string) string {
	if o.criHostsDir == "" {
		return ""
	}
	return fmt.Sprintf(`[plugins."io.containerd.grpc.v1.cri"]
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  sandbox_image = "registry.invalid/pause:never-pulled"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = %q
`, filepath.Join(dir, "cni", "bin"), filepath.Join(dir, "cni", "conf"), o.criHostsDir)
}
