package upstream

import (
	"fmt"
	"net/url"
)

// checkRealm validates a Bearer realm before any connection is made to it: it must be an absolute
// http(s) URL, https unless the registry itself is plain http, without user info. Its address is checked
// like a redirect target's (see dialGuard): an IP literal or localhost here, a name when it is dialled.
func (t *authTransport) checkRealm(realm string) (*url.URL, error) {
	u, err := url.Parse(realm)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("invalid token realm %q", realm)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if t.endpoint.Scheme != "http" {
			return nil, fmt.Errorf("token realm %q is plain http but the registry is https", realm)
		}
	default:
		return nil, fmt.Errorf("token realm %q: scheme must be https", realm)
	}
	if u.User != nil {
		return nil, fmt.Errorf("token realm %q must not carry user info", u.Redacted())
	}
	if err := t.guard.checkURL(u); err != nil {
		return nil, fmt.Errorf("token realm %q: %w", realm, err)
	}
	return u, nil
}
