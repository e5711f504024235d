package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/portcullis/portcullis/internal/strictyaml"
)

const adminUsage = `portcullis admin: operate a running Portcullis through its admin API

Usage:
  portcullis admin deny add MATCH --reason TEXT [--expires TIME]   refuse what MATCH names, whatever the policy says
  portcullis admin deny rm ID [--reason TEXT]                      remove a deny-list entry
  portcullis admin deny ls                                         list the deny-list entries
  portcullis admin allow add|rm|ls ...                             the same for the allow list (break-glass)
  portcullis admin audit [--since T] [--until T] [--image S] [--actor NAME] [--kind K] [--limit N]
  portcullis admin report DIGEST FILE [--reason TEXT]             store a CI vulnerability report (Trivy, SARIF, CycloneDX)
  portcullis admin vex FILE [--reason TEXT]                        store an OpenVEX document's statements
  portcullis admin explain IMAGE                                   why IMAGE is served or refused, requirement by requirement
  portcullis admin policy show                                     the policy in force: file, hash, rules
  portcullis admin policy reload [--reason TEXT]                   load the policy file again, on every replica
  portcullis admin policy preview FILE [--since D] [--max N]       which recently pulled images a candidate policy changes
  portcullis admin decisions forget IMAGE|--repository UP/REPO [--reason TEXT]
                                                                   forget cached decisions: the next pull decides afresh

IMAGE is [upstream/]repository[:tag][@digest], read as portcullis check reads it ("ghcr.io/acme/app:v1").
MATCH is upstream/repository-glob, optionally :tag or @digest ("ghcr.io/acme/**", "docker.io/library/nginx@sha256:...").
TIME is RFC 3339 (2026-12-31T00:00:00Z) or a duration from now for --expires (24h, 7d), back from now for --since/--until.
Flags may follow the arguments. Every verb takes:
  --admin URL          the admin API (default $PORTCULLIS_ADMIN_URL, else http://127.0.0.1:5002)
  --token-file FILE    a file holding the token (default: the token in $PORTCULLIS_ADMIN_TOKEN)
  --cacert FILE        CA bundle of the admin API's certificate; --cert FILE --key FILE a client certificate
  --timeout D          default 30s
  -o text|json         output, default text

Exit status: 0 done, 1 the API refused or failed (its message is printed), 2 a usage error.
`

// adminCmd runs a client verb against the admin API.
func adminCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, adminUsage)
		return usageError{msg: "admin: want a verb", printed: true}
	}
	switch args[0] {
	case "deny", "allow":
		return adminList(ctx, args[0], args[1:], stdout, stderr)
	case "audit":
		return adminAudit(ctx, args[1:], stdout, stderr)
	case "report", "vex":
		return adminPost(ctx, args[0], args[1:], stdout, stderr)
	case "explain":
		return adminExplain(ctx, args[1:], stdout, stderr)
	case "policy":
		return adminPolicy(ctx, args[1:], stdout, stderr)
	case "decisions":
		return adminDecisions(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, adminUsage)
		return nil
	}
	return usageError{msg: fmt.Sprintf("admin: unknown verb %q (want deny, allow, audit, report, vex, explain, policy or decisions; see portcullis admin help)", args[0])}
}

// adminFlagSet is a flag set with the common admin flags; its usage is the admin usage.
func adminFlagSet(name string, stderr io.Writer, f *adminFlags) *flag.FlagSet {
	fs := newFlagSet("admin "+name, stderr)
	f.register(fs)
	fs.Usage = func() { fmt.Fprint(stderr, adminUsage) }
	return fs
}

// parseInterspersed parses fs's flags wherever they stand among args and returns the other arguments in order;
// after "--" everything is an argument.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if consumed := args[:len(args)-len(rest)]; len(consumed) > 0 && consumed[len(consumed)-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
}

// wantArgs checks the number of positional arguments.
func wantArgs(verb string, pos []string, n int, what string) error {
	if len(pos) != n {
		if n == 0 {
			return usageError{msg: fmt.Sprintf("admin %s takes no arguments, got %q", verb, pos)}
		}
		return usageError{msg: fmt.Sprintf("admin %s: want %s, got %q", verb, what, pos)}
	}
	return nil
}

// entryID is what a list entry's id looks like; anything else would not stay one path segment.
var entryID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// listEntry is a list entry as the API shows it.
type listEntry struct {
	ID      string    `json:"id"`
	Kind    string    `json:"kind"`
	Match   string    `json:"match"`
	Reason  string    `json:"reason"`
	Expires time.Time `json:"expires"`
	Added   time.Time `json:"added"`
	By      string    `json:"by"`
}

// adminList runs deny|allow add|rm|ls.
func adminList(ctx context.Context, kind string, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{msg: fmt.Sprintf("admin %s: want add, rm or ls", kind)}
	}
	verb := kind + " " + args[0]
	var f adminFlags
	fs := adminFlagSet(verb, stderr, &f)
	var reason, expires string
	switch args[0] {
	case "add":
		fs.StringVar(&reason, "reason", "", "why (required): shown with every pull the entry changes and in the audit log")
		fs.StringVar(&expires, "expires", "", "when the entry stops applying: RFC 3339 or a duration from now (default never)")
	case "rm":
		fs.StringVar(&reason, "reason", "", "why, for the audit log")
	case "ls":
	default:
		return usageError{msg: fmt.Sprintf("admin %s: unknown verb %q (want add, rm or ls)", kind, args[0])}
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
	case "add":
		if err := wantArgs(verb, pos, 1, "one MATCH"); err != nil {
			return err
		}
		if strings.TrimSpace(reason) == "" {
			return usageError{msg: fmt.Sprintf("admin %s: --reason is required: say why, it is shown with every pull the entry changes", verb)}
		}
		body := map[string]string{"match": pos[0], "reason": reason}
		if expires != "" {
			t, err := parseWhen(expires, time.Now(), +1)
			if err != nil {
				return usageError{msg: "--expires: " + err.Error()}
			}
			body["expires"] = t.Format(time.RFC3339)
		}
		b, _ := json.Marshal(body)
		c, err := f.client(stderr)
		if err != nil {
			return err
		}
		ans, err := c.do(ctx, http.MethodPost, []string{"admin", "v1", kind}, nil, b, http.Header{"Content-Type": {"application/json"}})
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(stdout, ans)
		}
		var added struct {
			Entry listEntry `json:"entry"`
		}
		if err := json.Unmarshal(ans, &added); err != nil {
			return fmt.Errorf("the admin API's answer: %w", err)
		}
		e := added.Entry
		fmt.Fprintf(stdout, "added %s-list entry %s: %s (%s), expires %s\n", kind, e.ID, e.Match, oneLine(e.Reason), when(e.Expires))
		return nil
	case "rm":
		if err := wantArgs(verb, pos, 1, "one entry ID (see admin "+kind+" ls)"); err != nil {
			return err
		}
		if !entryID.MatchString(pos[0]) {
			return usageError{msg: fmt.Sprintf("admin %s: %q is not an entry ID (see admin %s ls)", verb, pos[0], kind)}
		}
		c, err := f.client(stderr)
		if err != nil {
			return err
		}
		h := http.Header{}
		if reason != "" {
			h.Set("X-Portcullis-Reason", reason)
		}
		if _, err := c.do(ctx, http.MethodDelete, []string{"admin", "v1", kind, pos[0]}, nil, nil, h); err != nil {
			return err
		}
		if asJSON {
			b, _ := json.Marshal(map[string]any{"id": pos[0], "removed": true})
			return printJSON(stdout, b)
		}
		fmt.Fprintf(stdout, "removed %s-list entry %s\n", kind, pos[0])
		return nil
	}
	if err := wantArgs(verb, pos, 0, ""); err != nil {
		return err
	}
	c, err := f.client(stderr)
	if err != nil {
		return err
	}
	ans, err := c.do(ctx, http.MethodGet, []string{"admin", "v1", kind}, nil, nil, nil)
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(stdout, ans)
	}
	var list struct {
		Entries []listEntry `json:"entries"`
	}
	if err := json.Unmarshal(ans, &list); err != nil {
		return fmt.Errorf("the admin API's answer: %w", err)
	}
	if len(list.Entries) == 0 {
		fmt.Fprintf(stdout, "no %s-list entries\n", kind)
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tMATCH\tEXPIRES\tADDED\tBY\tREASON")
	for _, e := range list.Entries {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.ID, e.Match, when(e.Expires), when(e.Added), e.By, oneLine(e.Reason))
	}
	return tw.Flush()
}

// adminAudit runs audit with its filters.
func adminAudit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f adminFlags
	fs := adminFlagSet("audit", stderr, &f)
	var since, until, image, actor, kind string
	var limit int
	fs.StringVar(&since, "since", "", "records from this time on: RFC 3339 or a duration back from now (1h, 7d)")
	fs.StringVar(&until, "until", "", "records up to this time: RFC 3339 or a duration back from now")
	fs.StringVar(&image, "image", "", "records whose image contains this")
	fs.StringVar(&actor, "actor", "", "records by this principal")
	fs.StringVar(&kind, "kind", "", "change, denial, break-glass, kept-last-good or warning")
	fs.IntVar(&limit, "limit", 0, "at most this many records, newest first (default 100, at most 10000)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs("audit", pos, 0, ""); err != nil {
		return err
	}
	asJSON, err := f.json()
	if err != nil {
		return err
	}
	q := url.Values{}
	now := time.Now()
	for _, tf := range []struct{ name, v string }{{"since", since}, {"until", until}} {
		if tf.v == "" {
			continue
		}
		t, err := parseWhen(tf.v, now, -1)
		if err != nil {
			return usageError{msg: "--" + tf.name + ": " + err.Error()}
		}
		q.Set(tf.name, t.Format(time.RFC3339))
	}
	for k, v := range map[string]string{"image": image, "actor": actor, "kind": kind} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if limit != 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	c, err := f.client(stderr)
	if err != nil {
		return err
	}
	ans, err := c.do(ctx, http.MethodGet, []string{"admin", "v1", "audit"}, q, nil, nil)
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(stdout, ans)
	}
	var recs struct {
		Records []struct {
			Time                                   time.Time
			Kind, Actor, Action, Image, Tag, Entry string
			Reason                                 string
		} `json:"records"`
	}
	if err := json.Unmarshal(ans, &recs); err != nil {
		return fmt.Errorf("the admin API's answer: %w", err)
	}
	if len(recs.Records) == 0 {
		fmt.Fprintln(stdout, "no audit records")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tKIND\tACTOR\tACTION\tIMAGE\tENTRY\tREASON")
	for _, r := range recs.Records {
		img := r.Image
		if r.Tag != "" {
			img += " (" + r.Tag + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", when(r.Time), r.Kind, dash(r.Actor), dash(r.Action), dash(img), dash(r.Entry), oneLine(r.Reason))
	}
	return tw.Flush()
}

// maxPostedFile caps a file a verb posts: the API takes reports and VEX up to 32 MiB.
const maxPostedFile = 32 << 20

// readPostedFile reads a file to post, refusing one over maxPostedFile.
func readPostedFile(path string) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	body, err := io.ReadAll(io.LimitReader(fh, maxPostedFile+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxPostedFile {
		return nil, fmt.Errorf("%s is over %d bytes", path, maxPostedFile)
	}
	return body, nil
}

// adminPost runs report DIGEST FILE (POST /admin/v1/reports/DIGEST) and vex FILE (POST /admin/v1/vex).
func adminPost(ctx context.Context, verb string, args []string, stdout, stderr io.Writer) error {
	var f adminFlags
	fs := adminFlagSet(verb, stderr, &f)
	var reason string
	fs.StringVar(&reason, "reason", "", "why, for the audit log")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	segs := []string{"admin", "v1", "vex"}
	if verb == "report" {
		if err := wantArgs(verb, pos, 2, "DIGEST FILE"); err != nil {
			return err
		}
		if !strings.Contains(pos[0], ":") || strings.Contains(pos[0], "/") {
			return usageError{msg: fmt.Sprintf("admin report: %q is not a digest (sha256:...)", pos[0])}
		}
		segs, pos = []string{"admin", "v1", "reports", pos[0]}, pos[1:]
	} else if err := wantArgs(verb, pos, 1, "one OpenVEX FILE"); err != nil {
		return err
	}
	asJSON, err := f.json()
	if err != nil {
		return err
	}
	body, err := readPostedFile(pos[0])
	if err != nil {
		return err
	}
	c, err := f.client(stderr)
	if err != nil {
		return err
	}
	h := http.Header{"Content-Type": {"application/json"}}
	if reason != "" {
		h.Set("X-Portcullis-Reason", reason)
	}
	ans, err := c.do(ctx, http.MethodPost, segs, nil, body, h)
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(stdout, ans)
	}
	if verb == "report" {
		var r struct {
			Digest, Scanner string
			Findings        int
			ScanTime        time.Time
		}
		if err := json.Unmarshal(ans, &r); err != nil {
			return fmt.Errorf("the admin API's answer: %w", err)
		}
		fmt.Fprintf(stdout, "stored the %s report for %s: %d findings, scanned %s\n", r.Scanner, r.Digest, r.Findings, when(r.ScanTime))
		return nil
	}
	var v struct {
		Digests []string
		Changes map[string]struct{ Waived, Withdrawn []string }
	}
	if err := json.Unmarshal(ans, &v); err != nil {
		return fmt.Errorf("the admin API's answer: %w", err)
	}
	for _, d := range v.Digests {
		ch := v.Changes[d]
		fmt.Fprintf(stdout, "%s: waived %s; withdrawn %s\n", d, list(ch.Waived), list(ch.Withdrawn))
	}
	return nil
}

// parseWhen reads an RFC 3339 time, or a duration (30m, 24h, 7d) taken from now in direction dir (+1 ahead,
// -1 back).
func parseWhen(s string, now time.Time, dir int) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	d, err := strictyaml.ParseDuration(s)
	if err != nil || d <= 0 {
		return time.Time{}, fmt.Errorf("want an RFC 3339 time (2026-12-31T00:00:00Z) or a positive duration (24h, 7d), not %q", s)
	}
	return now.Add(time.Duration(dir) * d).UTC().Truncate(time.Second), nil
}

// when formats a time for a table; the zero time is "never".
func when(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}

// dash stands in for an empty table cell.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// list joins a list for a line; an empty one is "nothing".
func list(s []string) string {
	if len(s) == 0 {
		return "nothing"
	}
	return strings.Join(s, ", ")
}

// oneLine keeps a free-text cell on its line.
func oneLine(s string) string { return dash(strings.Join(strings.Fields(s), " ")) }
