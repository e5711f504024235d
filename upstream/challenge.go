package upstream

import (
	"net/http"
	"strings"
)

// challenge is one WWW-Authenticate challenge: a scheme ("bearer", "basic", lower-cased) and its
// parameters (names lower-cased).
type challenge struct {
	scheme string
	params map[string]string
}

// parseChallenges parses every challenge in the WWW-Authenticate headers of resp.
func parseChallenges(h http.Header) []challenge {
	var out []challenge
	for _, v := range h.Values("WWW-Authenticate") {
		out = append(out, parseChallengeHeader(v)...)
	}
	return out
}

// parseChallengeHeader parses one header value (RFC 9110 section 11.6.1): comma-separated challenges,
// each a scheme followed by comma-separated name=value parameters, values being tokens or quoted
// strings. token68 credentials are skipped. It never fails: garbage yields fewer challenges.
func parseChallengeHeader(v string) []challenge {
	s := &scanner{s: v}
	var out []challenge
	for {
		s.skip(" \t,")
		scheme := s.token()
		if scheme == "" {
			if s.done() {
				return out
			}
			s.i++ // an unexpected character: skip it
			continue
		}
		c := challenge{scheme: strings.ToLower(scheme), params: map[string]string{}}
		for {
			s.skip(" \t,")
			mark := s.i
			name := s.token()
			if name == "" {
				// token68 or garbage: skip to the next comma.
				for !s.done() && s.peek() != ',' {
					s.i++
				}
				if s.done() {
					break
				}
				continue
			}
			s.skip(" \t")
			if s.peek() != '=' {
				s.i = mark // the next challenge's scheme
				break
			}
			s.i++
			s.skip(" \t")
			var val string
			if s.peek() == '"' {
				val = s.quoted()
			} else {
				val = s.token()
			}
			c.params[strings.ToLower(name)] = val
			if s.done() {
				break
			}
		}
		out = append(out, c)
		if s.done() {
			return out
		}
	}
}

type scanner struct {
	s string
	i int
}

func (s *scanner) done() bool { return s.i >= len(s.s) }

func (s *scanner) peek() byte {
	if s.done() {
		return 0
	}
	return s.s[s.i]
}

func (s *scanner) skip(set string) {
	for !s.done() && strings.IndexByte(set, s.s[s.i]) >= 0 {
		s.i++
	}
}

// token reads an RFC 9110 token (tchar run).
func (s *scanner) token() string {
	start := s.i
	for !s.done() && isTchar(s.s[s.i]) {
		s.i++
	}
	return s.s[start:s.i]
}

// quoted reads a quoted-string starting at '"', handling backslash escapes; an unterminated string
// runs to the end.
func (s *scanner) quoted() string {
	s.i++ // opening quote
	var b strings.Builder
	for !s.done() {
		c := s.s[s.i]
		s.i++
		switch c {
		case '"':
			return b.String()
		case '\\':
			if !s.done() {
				b.WriteByte(s.s[s.i])
				s.i++
			}
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func isTchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
