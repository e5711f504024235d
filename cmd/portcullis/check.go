package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/admission"
)

// check runs the same admission the proxy runs on a pull, for one image, and prints the decision with the evidence
// behind it. Exit 0: allowed; 1: denied (or could not decide).
func check(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("check", stderr)
	var cf commonFlags
	cf.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{msg: "check takes one image, e.g. portcullis check --policy policy.yaml ghcr.io/acme/app:v1"}
	}
	cfg, err := cf.load()
	if err != nil {
		return err
	}
	if cfg.Policy == "" {
		return usageError{msg: "check needs a policy (--policy FILE or policy: in the config)"}
	}
	// check keeps nothing: content in memory, state in a directory removed on return.
	dir, err := os.MkdirTemp("", "portcullis-check-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfg.DataDir, cfg.Content.Driver, cfg.Content.Parameters = dir, "inmemory", nil
	log := newLogger(cfg.Log, io.Discard)
	if cfg.Log.Level == "debug" {
		log = newLogger(cfg.Log, stderr)
	}
	a, err := build(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer a.Close()

	up, repo, ref, err := a.splitImage(fs.Arg(0))
	if err != nil {
		return err
	}
	client := a.clients[up]
	dgst, err := digest.Parse(ref)
	tag := ""
	if err != nil {
		tag = ref
		desc, err := client.Resolve(ctx, repo, ref, nil)
		if err != nil {
			return fmt.Errorf("resolve %s/%s:%s: %w", up, repo, ref, err)
		}
		dgst = desc.Digest
	}
	body, mediaType, _, err := client.Manifest(ctx, repo, dgst.String(), nil)
	if err != nil {
		return fmt.Errorf("fetch %s/%s@%s: %w", up, repo, dgst, err)
	}
	pd, facts, gerr := a.gate.Explain(ctx, admission.Subject{Upstream: up, Repository: repo, Tag: tag, Digest: dgst, MediaType: mediaType, Manifest: body})

	p := func(format string, args ...any) { fmt.Fprintf(stdout, format+"\n", args...) }
	p("image:     %s/%s@%s", up, repo, dgst)
	if tag != "" {
		p("tag:       %s", tag)
	}
	p("rule:      %s (%s)", pd.Rule, pd.Mode)
	verdict := "ALLOWED"
	if !pd.Allowed {
		verdict = "DENIED"
	} else if pd.Failed() {
		verdict = "ALLOWED (" + string(pd.Mode) + " mode: would be denied)"
	}
	p("decision:  %s", verdict)
	p("message:   %s", pd.Message)
	p("evidence:")
	roots := make([]string, 0, len(facts.Signatures))
	for r := range facts.Signatures {
		roots = append(roots, r)
	}
	slices.Sort(roots)
	for _, r := range roots {
		s := facts.Signatures[r]
		if s.Verified {
			p("  signature by %s: verified (%s)", r, s.Format)
		} else {
			p("  signature by %s: not verified (%s)", r, s.Reason)
		}
	}
	for _, at := range facts.Attestations {
		p("  attestation %s: verified, signed by %s", at.PredicateType, strings.Join(at.SignedBy, ", "))
	}
	if facts.Scan != nil {
		p("  scan report: %s (%s %s), scanned %s, %d findings", facts.Scan.Source, facts.Scan.Scanner, facts.Scan.ScannerVersion,
			facts.Scan.ScanTime.Format("2006-01-02 15:04"), len(facts.Scan.Findings))
	}
	if gerr != nil {
		p("  error: %v", gerr)
	}
	if len(roots) == 0 && len(facts.Attestations) == 0 && facts.Scan == nil && gerr == nil {
		p("  (the rule asks for none)")
	}
	for _, f := range pd.Failures {
		p("failed:    %s", f)
	}
	for _, n := range pd.Notes {
		p("note:      %s", n)
	}
	if !pd.Allowed {
		return errDenied
	}
	return nil
}

// errDenied makes check exit 1 without another line of output.
var errDenied = quietError{}

type quietError struct{}

func (quietError) Error() string { return "" }

// splitImage splits IMAGE into a configured upstream, the upstream-relative repository and a tag or digest, the
// way the proxy routes a prefixed name: a first component that names a configured upstream picks it, otherwise the
// default upstream; docker.io adds library/ to single names.
func (a *app) splitImage(image string) (up, repo, ref string, err error) {
	rest := image
	if i := strings.Index(rest, "@"); i >= 0 {
		rest, ref = rest[:i], rest[i+1:]
	} else if i := strings.LastIndex(rest, ":"); i > strings.LastIndex(rest, "/") {
		rest, ref = rest[:i], rest[i+1:]
	} else {
		ref = "latest"
	}
	up = a.cfg.DefaultUpstream().Name
	if first, after, ok := strings.Cut(rest, "/"); ok && (strings.ContainsAny(first, ".:") || first == "localhost") {
		if _, known := a.clients[first]; !known {
			return "", "", "", fmt.Errorf("image %s: upstream %q is not configured", image, first)
		}
		up, rest = first, after
	}
	if up == "docker.io" && !strings.Contains(rest, "/") {
		rest = "library/" + rest
	}
	if rest == "" {
		return "", "", "", usageError{msg: "image " + image + ": no repository"}
	}
	return up, rest, ref, nil
}
