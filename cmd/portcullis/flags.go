package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/portcullis/portcullis/configs"
)

// commonFlags are the flags serve, validate and check share: a config file and the quick-start overrides.
type commonFlags struct {
	config    string
	listen    string
	opsListen string
	dataDir   string
	policy    string
	logLevel  string
	logFormat string
	upstreams upstreamFlags
}

func (c *commonFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.config, "config", "", "YAML config file (default: built-in defaults)")
	fs.StringVar(&c.listen, "listen", "", "registry listener address (default 127.0.0.1:5000)")
	fs.StringVar(&c.opsListen, "ops-listen", "", "ops listener for /metrics, /healthz, /readyz (default 127.0.0.1:5001)")
	fs.StringVar(&c.dataDir, "data-dir", "", "data directory for embedded state and content (default ./portcullis-data)")
	fs.StringVar(&c.policy, "policy", "", "policy file (default: none, every image is served)")
	fs.StringVar(&c.logLevel, "log-level", "", "debug, info, warn or error (default info)")
	fs.StringVar(&c.logFormat, "log-format", "", "text or json (default text)")
	fs.Var(&c.upstreams, "upstream", "upstream registry as NAME=URL, repeatable; NAME is the registry host clients use (what containerd sends as ns=), the first is the default, http:// means plain HTTP")
}

// upstreamFlags collects repeated --upstream NAME=URL flags.
type upstreamFlags []configs.Upstream

func (u *upstreamFlags) String() string {
	var parts []string
	for _, x := range *u {
		parts = append(parts, x.Name+"="+x.URL)
	}
	return strings.Join(parts, ",")
}

func (u *upstreamFlags) Set(s string) error {
	name, url, ok := strings.Cut(s, "=")
	if !ok || name == "" || url == "" {
		return fmt.Errorf("want NAME=URL, e.g. docker.io=https://registry-1.docker.io, got %q", s)
	}
	*u = append(*u, configs.Upstream{Name: name, URL: url})
	return nil
}

// load builds the configuration: the file (or the defaults), then the flags on top, then environment overrides,
// then validation.
func (c *commonFlags) load() (*configs.Config, error) {
	var cfg *configs.Config
	var err error
	if c.config != "" {
		if cfg, err = configs.Load(c.config); err != nil {
			return nil, err
		}
	} else {
		cfg = configs.Default()
	}
	if c.listen != "" {
		cfg.Listen = c.listen
	}
	if c.opsListen != "" {
		cfg.OpsListen = c.opsListen
	}
	if c.dataDir != "" {
		// The filesystem content root follows the data dir unless the file set it apart.
		if root, ok := cfg.Content.Parameters["rootdirectory"].(string); ok && cfg.Content.Driver == "filesystem" &&
			root == filepath.Join(cfg.DataDir, "content") {
			cfg.Content.Parameters["rootdirectory"] = filepath.Join(c.dataDir, "content")
		}
		cfg.DataDir = c.dataDir
	}
	if c.policy != "" {
		cfg.Policy = c.policy
	}
	if c.logLevel != "" {
		cfg.Log.Level = c.logLevel
	}
	if c.logFormat != "" {
		cfg.Log.Format = c.logFormat
	}
	if len(c.upstreams) > 0 {
		ups := make([]configs.Upstream, 0, len(c.upstreams))
		for i, u := range c.upstreams {
			x := configs.DefaultUpstreamFor(u.Name)
			x.URL, x.Default = u.URL, i == 0
			ups = append(ups, x)
		}
		cfg.Upstreams = ups
	}
	if c.config == "" {
		cfg.ApplyEnv(nil)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := cfg.CheckFiles(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// parseFlags parses args, turning a bad flag into a usage error (exit 2).
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{msg: err.Error(), printed: true}
	}
	return nil
}

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("portcullis "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}
