package httpauth

import "strings"

// Bearer returns the token of an "Authorization: Bearer <token>" header value. The scheme is case-insensitive
// (RFC 9110 section 11.1) and the token is what follows the single space, trimmed of surrounding spaces; ok is
// false for another scheme or an empty token.
func Bearer(authorization string) (token string, ok bool) {
	scheme, rest, found := strings.Cut(authorization, " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(rest)
	return token, token != ""
}
