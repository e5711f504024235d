package upstream

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// maxListBody caps tag lists and referrers indexes.
const maxListBody = 4 << 20

// Tags lists the tags of repo, passing the n (page size, omitted when <= 0) and last (start after)
// pagination parameters through. next is the last value for the following page, taken from the
// upstream's Link header, or "" when there is no next page.
func (c *Client) Tags(ctx context.Context, repo string, n int, last string) (tags []string, next string, err error) {
	op := "tags " + repo
	if err := c.checkRepo(repo); err != nil {
		return nil, "", err
	}
	ctx2, cancel := context.WithTimeout(ctx, c.opts.timeout)
	defer cancel()
	u := c.endpoint.JoinPath("v2", repo, "tags", "list")
	q := url.Values{}
	if n > 0 {
		q.Set("n", strconv.Itoa(n))
	}
	if last != "" {
		q.Set("last", last)
	}
	u.RawQuery = q.Encode()
	resp, err := c.do(ctx2, http.MethodGet, kindTags, u, []string{"application/json"})
	if err != nil {
		return nil, "", c.wrapErr(ctx, op, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, "", c.newError(op, resp)
	}
	body, err := c.readList(ctx, op, resp)
	if err != nil {
		return nil, "", err
	}
	var list struct {
		Tags []string `json:"tags"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		return nil, "", fmt.Errorf("upstream %s %s: bad tag list: %w", c.name, op, err)
	}
	if list.Tags == nil {
		list.Tags = []string{}
	}
	return list.Tags, nextLast(resp.Header.Values("Link")), nil
}

// readList reads a list body of at most maxListBody bytes.
func (c *Client) readList(parent context.Context, op string, resp *http.Response) ([]byte, error) {
	if resp.ContentLength > maxListBody {
		return nil, fmt.Errorf("upstream %s %s: %w: %d bytes", c.name, op, ErrTooLarge, resp.ContentLength)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxListBody+1))
	if err != nil {
		return nil, c.wrapErr(parent, op, err)
	}
	if len(body) > maxListBody {
		return nil, fmt.Errorf("upstream %s %s: %w: more than %d bytes", c.name, op, ErrTooLarge, maxListBody)
	}
	return body, nil
}

// nextLast finds the rel="next" link (RFC 8288) and returns its last query parameter.
func nextLast(links []string) string {
	for _, h := range links {
		for _, l := range splitLinks(h) {
			target, params, ok := strings.Cut(l, ";")
			target = strings.TrimSpace(target)
			if !ok || !strings.HasPrefix(target, "<") || !strings.HasSuffix(target, ">") {
				continue
			}
			if !hasRelNext(params) {
				continue
			}
			u, err := url.Parse(target[1 : len(target)-1])
			if err != nil {
				continue
			}
			return u.Query().Get("last")
		}
	}
	return ""
}

// splitLinks splits a Link header on the commas between links, not those inside <...> or quotes.
func splitLinks(h string) []string {
	var out []string
	depth, quoted, start := 0, false, 0
	for i := 0; i < len(h); i++ {
		switch c := h[i]; {
		case c == '"':
			quoted = !quoted
		case quoted:
		case c == '<':
			depth++
		case c == '>' && depth > 0:
			depth--
		case c == ',' && depth == 0:
			out = append(out, h[start:i])
			start = i + 1
		}
	}
	return append(out, h[start:])
}

func hasRelNext(params string) bool {
	for _, p := range strings.Split(params, ";") {
		k, v, ok := strings.Cut(p, "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), "rel") {
			continue
		}
		for _, r := range strings.Fields(strings.Trim(strings.TrimSpace(v), `"`)) {
			if strings.EqualFold(r, "next") {
				return true
			}
		}
	}
	return false
}
