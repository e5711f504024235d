package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/portcullis/portcullis/internal/strictyaml"
)

// The admin verbs about deciding: explain (GET /admin/v1/explain), policy show, reload and preview
// (/admin/v1/policy...) and decisions forget (DELETE /admin/v1/decisions). Each prints the answer for a person, or
// with -o json the API's JSON as it came.

// explainAnswer is the admin API's answer to GET /admin/v1/explain (schema Explanation).
type explainAnswer struct {
	Image     string     `json:"image"`
	Tag       string     `json:"tag"`
	Policy    string     `json:"policy"`
	Allowed   bool       `json:"allowed"`
	Rule      string     `json:"rule"`
	Mode      string     `json:"mode"`
	Message   string     `json:"message"`
	Warnings  []string   `json:"warnings"`
	DecidedBy string     `json:"decidedBy"`
	List      *listEntry `json:"list"`
	Cached    *struct {
		Allowed bool      `json:"allowed"`
		Rule    string    `json:"rule"`
		Mode    string    `json:"mode"`
		Expires time.Time `json:"expires"`
		Holds   bool      `json:"holds"`
	} `json:"cached"`
	Through *struct {
		How string `json:"how"`
		Via string `json:"via"`
	} `json:"through"`
	Evaluation evaluation `json:"evaluation"`
}

// decidedBy says in words how a pull is decided, by the answer's decidedBy.
var decidedBy = map[string]string{
	"deny-list":  "by a deny-list entry",
	"allow-list": "by an allow-list entry (break-glass)",
	"cached":     "by the cached decision",
	"parent":     "as a child of an admitted index",
	"artifact":   "as an artifact of an admitted image",
	"referrer":   "as a referrer of an admitted image",
	"evaluated":  "by the rule, evaluated now",
	"trust-data": "by the tag's trust data (Docker Content Trust), before anything is fetched",
}

// adminExplain runs explain IMAGE: GET /admin/v1/explain?image=IMAGE.
func adminExplain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f adminFlags
	fs := adminFlagSet("explain", stderr, &f)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs("explain", pos, 1, "one IMAGE, e.g. ghcr.io/acme/app:v1"); err != nil {
		return err
	}
	asJSON, err := f.json()
	if err != nil {
		return err
	}
	c, err := f.client(stderr)
	if err != nil {
		return err
	}
	ans, err := c.do(ctx, http.MethodGet, []string{"admin", "v1", "explain"}, url.Values{"image": {pos[0]}}, nil, nil)
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(stdout, ans)
	}
	var x explainAnswer
	if err := json.Unmarshal(ans, &x); err != nil {
		return fmt.Errorf("the admin API's answer: %w", err)
	}
	printExplanation(stdout, x)
	return nil
}

// printExplanation prints what a pull of the image gets and why: the decision and what made it (a list entry, the
// cached decision, an admitted index or image, or the rule), then the rule's evaluation of the evidence gathered
// now, requirement by requirement.
func printExplanation(w io.Writer, x explainAnswer) {
	p := func(format string, args ...any) { printLine(w, format, args...) }
	p("image:     %s", x.Image)
	if x.Tag != "" {
		p("tag:       %s", x.Tag)
	}
	p("policy:    %s", shortHash(x.Policy))
	p("rule:      %s (%s)", x.Rule, x.Mode)
	how := decidedBy[x.DecidedBy]
	if how == "" {
		how = "by " + x.DecidedBy
	}
	p("decision:  %s, %s", verdictWord(x.Allowed, x.Mode, len(x.Warnings) > 0), how)
	p("message:   %s", x.Message)
	for _, warn := range x.Warnings {
		p("warning:   %s", warn)
	}
	if l := x.List; l != nil {
		p("list:      %s-list entry %s: %s (%s), by %s, expires %s", l.Kind, l.ID, l.Match, oneLine(l.Reason), l.By, when(l.Expires))
	} else {
		p("list:      no entry names it")
	}
	if cd := x.Cached; cd != nil {
		holds := ""
		if !cd.Holds {
			holds = "; it rests on an admission that no longer holds, so a pull decides afresh"
		}
		p("cached:    %s by rule %s (%s), until %s%s", verdictWord(cd.Allowed, cd.Mode, false), cd.Rule, cd.Mode, when(cd.Expires), holds)
	} else {
		p("cached:    no decision (a pull evaluates the rule)")
	}
	if th := x.Through; th != nil {
		p("through:   %s of %s", th.How, th.Via)
	}
	e := x.Evaluation
	p("evidence:  gathered now; on it rule %s (%s) alone decides %s", e.Rule, e.Mode, e.verdict())
	printEvaluation(w, "  ", e)
}

// shortHash is a policy hash as the logs and the API's shortHash show it.
func shortHash(h string) string { return h[:min(len(h), 12)] }

// adminPolicy runs policy show|reload|preview.
func adminPolicy(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{msg: "admin policy: want show, reload or preview FILE"}
	}
	verb := "policy " + args[0]
	var f adminFlags
	fs := adminFlagSet(verb, stderr, &f)
	var reason, since string
	var maxImages int
	switch args[0] {
	case "show":
	case "reload":
		fs.StringVar(&reason, "reason", "", "why, for the audit log")
	case "preview":
		fs.StringVar(&since, "since", "", "replay the images pulled within this long (90m, 24h, 7d; default 24h, at most 30d)")
		fs.IntVar(&maxImages, "max", 0, "replay at most this many images, the most recently pulled first (default 1000, at most 10000)")
	default:
		return usageError{msg: fmt.Sprintf("admin policy: unknown verb %q (want show, reload or preview)", args[0])}
	}
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return err
	}
	asJSON, err := f.json()
	if err != nil {
		return err
	}
	switch args[0] {
	case "show":
		if err := wantArgs(verb, pos, 0, ""); err != nil {
			return err
		}
		c, err := f.client(stderr)
		if err != nil {
			return err
		}
		ans, err := c.do(ctx, http.MethodGet, []string{"admin", "v1", "policy"}, nil, nil, nil)
		if err != nil || asJSON {
			return jsonOr(stdout, ans, err)
		}
		var st struct {
			File, Hash, ShortHash string
			Loaded                time.Time
			Rules                 []string
			HasDefault            bool
		}
		if err := json.Unmarshal(ans, &st); err != nil {
			return fmt.Errorf("the admin API's answer: %w", err)
		}
		def := "yes"
		if !st.HasDefault {
			def = "none: what no rule matches is denied"
		}
		printLine(stdout, "file:      %s", st.File)
		printLine(stdout, "hash:      %s (%s)", st.ShortHash, st.Hash)
		printLine(stdout, "loaded:    %s", when(st.Loaded))
		printLine(stdout, "rules:     %s", list(st.Rules))
		printLine(stdout, "default:   %s", def)
		return nil
	case "reload":
		if err := wantArgs(verb, pos, 0, ""); err != nil {
			return err
		}
		c, err := f.client(stderr)
		if err != nil {
			return err
		}
		h := http.Header{}
		if reason != "" {
			h.Set("X-Portcullis-Reason", reason)
		}
		ans, err := c.do(ctx, http.MethodPost, []string{"admin", "v1", "policy", "reload"}, nil, nil, h)
		if err != nil || asJSON {
			return jsonOr(stdout, ans, err)
		}
		var ch struct {
			Old, New string
			Changed  bool
		}
		if err := json.Unmarshal(ans, &ch); err != nil {
			return fmt.Errorf("the admin API's answer: %w", err)
		}
		if !ch.Changed {
			printLine(stdout, "the policy file holds the policy in force (%s): nothing changed", shortHash(ch.New))
			return nil
		}
		printLine(stdout, "policy reloaded on every replica: %s -> %s", shortHash(ch.Old), shortHash(ch.New))
		return nil
	}
	return adminPolicyPreview(ctx, &f, pos, since, maxImages, asJSON, stdout, stderr)
}

// jsonOr prints the answer as JSON, or returns err.
func jsonOr(w io.Writer, ans []byte, err error) error {
	if err != nil {
		return err
	}
	return printJSON(w, ans)
}

// previewAnswer is the admin API's answer to POST /admin/v1/policy/preview (schema PolicyPreview).
type previewAnswer struct {
	Policy    string    `json:"policy"`
	Candidate string    `json:"candidate"`
	Since     time.Time `json:"since"`
	Counts    struct {
		Replayed, Unchanged, NewlyDenied, NewlyAllowed, Errors, Skipped int
	} `json:"counts"`
	NewlyDenied  []previewChange `json:"newlyDenied"`
	NewlyAllowed []previewChange `json:"newlyAllowed"`
	Errors       []struct {
		Image string `json:"image"`
		Tag   string `json:"tag"`
		Error string `json:"error"`
	} `json:"errors"`
}

type previewChange struct {
	Image      string     `json:"image"`
	Tag        string     `json:"tag"`
	LastPulled time.Time  `json:"lastPulled"`
	Now        evaluation `json:"now"`
	Candidate  evaluation `json:"candidate"`
	List       *listEntry `json:"list"`
}

// adminPolicyPreview runs policy preview FILE: POST /admin/v1/policy/preview with the file.
func adminPolicyPreview(ctx context.Context, f *adminFlags, pos []string, since string, maxImages int, asJSON bool, stdout, stderr io.Writer) error {
	if err := wantArgs("policy preview", pos, 1, "one policy FILE"); err != nil {
		return err
	}
	q := url.Values{}
	if since != "" {
		if d, err := strictyaml.ParseDuration(since); err != nil || d <= 0 {
			return usageError{msg: fmt.Sprintf("--since: want a duration such as 24h or 7d, not %q", since)}
		}
		q.Set("since", since)
	}
	if maxImages < 0 {
		return usageError{msg: fmt.Sprintf("--max: want a positive number, not %d", maxImages)}
	} else if maxImages > 0 {
		q.Set("max", strconv.Itoa(maxImages))
	}
	body, err := readPostedFile(pos[0])
	if err != nil {
		return err
	}
	c, err := f.client(stderr)
	if err != nil {
		return err
	}
	ans, err := c.do(ctx, http.MethodPost, []string{"admin", "v1", "policy", "preview"}, q, body, http.Header{"Content-Type": {"application/yaml"}})
	if err != nil || asJSON {
		return jsonOr(stdout, ans, err)
	}
	var pv previewAnswer
	if err := json.Unmarshal(ans, &pv); err != nil {
		return fmt.Errorf("the admin API's answer: %w", err)
	}
	printPreview(stdout, pv)
	return nil
}

// printPreview prints a preview: the counts, then each image whose verdict would change with its decision and
// reasons under the policy in force and under the candidate, then the images that could not be replayed.
func printPreview(w io.Writer, pv previewAnswer) {
	p := func(format string, args ...any) { printLine(w, format, args...) }
	n := pv.Counts
	p("policy:    %s in force, %s the candidate", shortHash(pv.Policy), shortHash(pv.Candidate))
	p("replayed:  %d images pulled since %s: %d unchanged, %d newly denied, %d newly allowed, %d errors, %d skipped (past --max)",
		n.Replayed, when(pv.Since), n.Unchanged, n.NewlyDenied, n.NewlyAllowed, n.Errors, n.Skipped)
	for _, group := range []struct {
		name    string
		changes []previewChange
	}{{"newly denied", pv.NewlyDenied}, {"newly allowed", pv.NewlyAllowed}} {
		if len(group.changes) == 0 {
			continue
		}
		p("")
		p("%s (%d):", group.name, len(group.changes))
		for _, c := range group.changes {
			tag := ""
			if c.Tag != "" {
				tag = "tag " + c.Tag + ", "
			}
			p("  %s (%slast pulled %s)", c.Image, tag, when(c.LastPulled))
			for _, side := range []struct {
				name string
				e    evaluation
			}{{"now:      ", c.Now}, {"candidate:", c.Candidate}} {
				p("    %s %s by rule %s (%s)", side.name, side.e.verdict(), side.e.Rule, side.e.Mode)
				printEvaluation(w, "      ", side.e)
			}
			if l := c.List; l != nil {
				p("    list:      %s-list entry %s (%s) decides it before any policy: its pulls do not change while it stands", l.Kind, l.ID, oneLine(l.Reason))
			}
		}
	}
	if len(pv.Errors) > 0 {
		p("")
		p("not replayed (%d):", len(pv.Errors))
		for _, e := range pv.Errors {
			p("  %s: %s", e.Image, oneLine(e.Error))
		}
	}
	if n.NewlyDenied+n.NewlyAllowed == 0 {
		p("")
		p("no image pulled since %s changes its verdict under the candidate", when(pv.Since))
	}
}

// adminDecisions runs decisions forget IMAGE|--repository UPSTREAM/REPO: DELETE /admin/v1/decisions.
func adminDecisions(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "forget" {
		return usageError{msg: "admin decisions: want forget IMAGE or forget --repository UPSTREAM/REPO"}
	}
	var f adminFlags
	fs := adminFlagSet("decisions forget", stderr, &f)
	var reason, repo string
	fs.StringVar(&reason, "reason", "", "why, for the audit log")
	fs.StringVar(&repo, "repository", "", "forget every digest of this repository in the pull log (upstream/repository), instead of one IMAGE")
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return err
	}
	q := url.Values{}
	switch {
	case repo != "" && len(pos) == 0:
		q.Set("repository", repo)
	case repo == "" && len(pos) == 1:
		q.Set("image", pos[0])
	default:
		return usageError{msg: fmt.Sprintf("admin decisions forget: want one IMAGE or --repository UPSTREAM/REPO, got %q and --repository %q", pos, repo)}
	}
	asJSON, err := f.json()
	if err != nil {
		return err
	}
	c, err := f.client(stderr)
	if err != nil {
		return err
	}
	h := http.Header{}
	if reason != "" {
		h.Set("X-Portcullis-Reason", reason)
	}
	ans, err := c.do(ctx, http.MethodDelete, []string{"admin", "v1", "decisions"}, q, nil, h)
	if err != nil || asJSON {
		return jsonOr(stdout, ans, err)
	}
	var fg struct {
		Forgotten string
		Digests   []string
		Count     int
	}
	if err := json.Unmarshal(ans, &fg); err != nil {
		return fmt.Errorf("the admin API's answer: %w", err)
	}
	if fg.Count == 0 {
		printLine(stdout, "no decision about %s to forget: none of its digests is in the pull log", fg.Forgotten)
		return nil
	}
	noun := "digests"
	if fg.Count == 1 {
		noun = "digest"
	}
	printLine(stdout, "forgot the cached decisions about %s, on every replica (%d %s); the next pull decides afresh", fg.Forgotten, fg.Count, noun)
	if repo != "" {
		for _, d := range fg.Digests {
			printLine(stdout, "  %s", d)
		}
	}
	return nil
}
