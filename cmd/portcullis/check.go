package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/admission"
	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/internal/imageref"
	"github.com/portcullis/portcullis/upstream"
)

// check decides on one image the way a pull does, through admission.Gate.Admit, and prints the decision with the
// evidence behind it. It builds only what deciding needs (the upstream clients, the policy, its verifier and the
// gate) over state in memory, so nothing carries over between runs: the image is evaluated afresh, and a platform
// child or a signature is judged as a pull of it alone would be (on its own facts, and not through an index or
// an image admitted earlier). Exit 0: allowed; 1: denied (or could not decide).
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
	img, err := parseImage(cfg, fs.Arg(0))
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log, io.Discard)
	if cfg.Log.Level == "debug" {
		log = newLogger(cfg.Log, stderr)
	}
	kv := cache.NewMemory()
	defer kv.Close()
	clients, gate, err := newChecker(cfg, kv, log)
	if err != nil {
		return err
	}

	// A tag under a Docker Content Trust rule is what its trust data signs, as a pull resolves it.
	if img.digest == "" {
		tt, err := gate.TrustedTag(ctx, img.upstream, img.repo, img.tag)
		switch {
		case err != nil:
			return fmt.Errorf("decide on %s/%s:%s: could not decide (%w)", img.upstream, img.repo, img.tag, err)
		case tt.Denied != "":
			printTagDenied(stdout, img, tt)
			return errDenied
		case tt.Applies:
			img.digest = tt.Digest
		}
	}
	s, err := imageResolver{cfg: cfg, clients: clients}.subject(ctx, img, true)
	if err != nil {
		return err
	}
	v, err := gate.Admit(ctx, s)
	if err != nil {
		return fmt.Errorf("decide on %s: %w", s.Image(), err)
	}
	printVerdict(stdout, img, s.Digest, v)
	if !v.Allowed {
		return errDenied
	}
	return nil
}

// newChecker builds what check decides with: a client for each configured upstream and the policy's gate, with
// its reports, scanner credentials and decisions in kv.
func newChecker(cfg *configs.Config, kv cache.KV, log *slog.Logger) (map[string]*upstream.Client, *admission.Gate, error) {
	clients := map[string]*upstream.Client{}
	endpoints := map[string]admission.Endpoint{}
	for _, uc := range cfg.Upstreams {
		c, err := newUpstreamClient(uc, cfg)
		if err != nil {
			return nil, nil, fmt.Errorf("upstream %s: %w", uc.Name, err)
		}
		clients[uc.Name], endpoints[uc.Name] = c, c
	}
	gate, err := newGate(cfg, endpoints, kv, admission.NewReports(kv, 0), admission.NewScanCredentials(kv), admission.NewMetrics(nil), log, nil)
	if err != nil {
		return nil, nil, err
	}
	return clients, gate, nil
}

// printVerdict prints the decision on the image at dgst and, when it was evaluated now, the evidence behind it:
// each requirement of the rule, passed or failed, with its evidence, in the words of `portcullis admin explain`
// (printEvaluation).
func printVerdict(w io.Writer, img image, dgst digest.Digest, v admission.Verdict) {
	p := func(format string, args ...any) { printLine(w, format, args...) }
	p("image:     %s/%s@%s", img.upstream, img.repo, dgst)
	if img.tag != "" {
		p("tag:       %s", img.tag)
	}
	p("rule:      %s (%s)", v.Rule, v.Mode)
	e := v.Evaluation
	p("decision:  %s", verdictWord(v.Allowed, v.Mode, (e != nil && e.Decision.Failed()) || len(v.Warnings) > 0))
	p("message:   %s", v.Reason)
	p("evidence:")
	if e == nil {
		// Not reached with check's empty state; kept so that a verdict from elsewhere still prints.
		p("  (none of its own: decided through another manifest)")
		return
	}
	printEvaluation(w, "  ", evaluationOf(e))
}

// printTagDenied prints the denial of a tag its trust data does not sign as the rule requires: a pull is denied
// before any digest is fetched, so there is no evidence to show.
func printTagDenied(w io.Writer, img image, tt admission.TrustedTag) {
	p := func(format string, args ...any) { printLine(w, format, args...) }
	p("image:     %s/%s:%s", img.upstream, img.repo, img.tag)
	p("rule:      %s (%s)", tt.Rule, tt.Mode)
	p("decision:  %s", verdictWord(false, string(tt.Mode), true))
	p("message:   %s", tt.Denied)
	p("evidence:")
	p("  (none: the tag's trust data decides it before anything is fetched)")
}

// errDenied makes check exit 1 without another line of output.
var errDenied = quietError{}

type quietError struct{}

func (quietError) Error() string { return "" }

// image is check's IMAGE: the configured upstream, the repository there, and a tag or a digest.
type image struct {
	upstream, repo, tag string
	digest              digest.Digest
}

// parseImage reads IMAGE in the reference grammar ([host/]path[:tag][@digest]) and names it the way the proxy
// routes a request without ns=: a host-like first component picks that configured upstream, otherwise the
// default upstream (imageref.SplitName); docker.io adds library/ to single names (imageref.UpstreamRepository). With a
// digest the tag is ignored, as a pull by digest ignores it; with neither the tag is latest.
func parseImage(cfg *configs.Config, s string) (image, error) {
	ref, err := reference.Parse(s)
	if err != nil {
		return image{}, usageError{msg: fmt.Sprintf("image %q: %v", s, err)}
	}
	named, ok := ref.(reference.Named)
	if !ok {
		return image{}, usageError{msg: fmt.Sprintf("image %q: no repository", s)}
	}
	img := image{upstream: cfg.DefaultUpstream().Name}
	prefix, path := imageref.SplitName(named.Name())
	if prefix != "" {
		i := slices.IndexFunc(cfg.Upstreams, func(u configs.Upstream) bool { return strings.EqualFold(u.Name, prefix) })
		if i < 0 {
			return image{}, fmt.Errorf("image %s: upstream %q is not configured", s, prefix)
		}
		img.upstream = cfg.Upstreams[i].Name
	}
	if img.repo, err = imageref.UpstreamRepository(img.upstream, path); err != nil {
		return image{}, usageError{msg: fmt.Sprintf("image %q: repository %q: %v", s, path, err)}
	}
	switch r := ref.(type) {
	case reference.Digested:
		img.digest = r.Digest()
	case reference.Tagged:
		img.tag = r.Tag()
	default:
		img.tag = "latest"
	}
	return img, nil
}
