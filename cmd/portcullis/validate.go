package main

import (
	"fmt"
	"io"
)

// validate checks a config (and, later, its policy) without serving.
func validate(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("validate", stderr)
	var cf commonFlags
	cf.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 1 && cf.config == "" {
		cf.config = fs.Arg(0)
	} else if fs.NArg() > 0 {
		return usageError{msg: fmt.Sprintf("validate takes at most one config file, got %q", fs.Args())}
	}
	cfg, err := cf.load()
	if err != nil {
		return err
	}
	src := cf.config
	if src == "" {
		src = "built-in defaults"
	}
	fmt.Fprintf(stdout, "%s: ok (%d upstreams, default %s)\n", src, len(cfg.Upstreams), cfg.DefaultUpstream().Name)
	return nil
}
