package main

import (
	"fmt"
	"io"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/verifier"
	"github.com/portcullis/portcullis/verifier/dct"
)

// validate checks a config and the policy it names (files included) without serving.
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
	if cfg.Policy == "" {
		fmt.Fprintln(stdout, "no policy: every image would be served")
		return nil
	}
	popts, err := policyOptions(cfg)
	if err != nil {
		return err
	}
	pol, err := policy.Load(cfg.Policy, popts...)
	if err != nil {
		return err
	}
	if _, err := verifier.New(pol.TrustRoots()); err != nil { // keys and trusted roots must parse, too
		return fmt.Errorf("%s: %w", cfg.Policy, err)
	}
	if _, err := dct.New(pol.TrustRoots()); err != nil { // so must notary roots' pinned keys
		return fmt.Errorf("%s: %w", cfg.Policy, err)
	}
	def := "a default"
	if !pol.HasDefault() {
		def = "no default: section, so images that no rule matches are denied"
	}
	fmt.Fprintf(stdout, "%s: ok (%d rules and %s, %d trust roots, hash %s)\n", cfg.Policy, len(pol.Rules()), def, len(pol.TrustRoots()), pol.Hash()[:12])
	return nil
}
