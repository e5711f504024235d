package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/portcullis/portcullis/internal/httpauth"
)

// The errors an Authenticator returns. Any error other than ErrNoCredential counts as a refused credential, which
// the API logs and rate-limits per client address.
var (
	// ErrNoCredential means the request carries no credential at all: no Authorization header, no verified client
	// certificate.
	ErrNoCredential = errors.New("a valid admin token or client certificate is required")
	// ErrBadCredential means the request carries a credential that is not valid: an unknown token, another
	// Authorization scheme, a certificate no mapping admits. The message is the same for every such case, so it
	// tells a guesser nothing.
	ErrBadCredential = errors.New("the admin credential is not valid")
)

// Token is one named admin token as configured: the principal it authenticates and its secret. NewTokens keeps
// only the secret's SHA-256.
type Token struct {
	// Name is the principal's name, the actor of the audit records its changes write: letters, digits, '.', '_',
	// '-', '@', at most 64.
	Name string
	// Role is RoleRead or RoleWrite.
	Role Role
	// Secret is the bearer token; required.
	Secret string
}

// validName is what a principal's name may be: it travels into logs and audit records as it stands.
var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

// tokenHash is one token as kept: its SHA-256 and who it authenticates.
type tokenHash struct {
	sum [sha256.Size]byte
	who Principal
}

// Tokens authenticates "Authorization: Bearer <token>" against named tokens, each with a role.
//
// Only each token's SHA-256 is kept, so a heap dump or a debugger shows no usable secret. An unsalted fast hash is
// enough because the tokens are random secrets (the configuration asks for 16 characters at least;
// `openssl rand -hex 32` gives 64): nobody can search such a space, so a slow password hash would add start-up and
// per-request cost and no protection. A presented token is hashed and compared with every stored hash in constant
// time, all of them every time, so the time an answer takes reveals neither whether a token exists nor which.
type Tokens struct {
	hashes []tokenHash
}

var _ Authenticator = (*Tokens)(nil)

// NewTokens returns the authenticator of tokens. A name that is empty, not a valid name or used twice, a role
// other than read or write, an empty secret, or one secret given to two names is an error naming the token.
func NewTokens(tokens ...Token) (*Tokens, error) {
	t := &Tokens{}
	names := map[string]bool{}
	sums := map[[sha256.Size]byte]string{}
	for i, tok := range tokens {
		if !validName.MatchString(tok.Name) {
			return nil, fmt.Errorf("admin token %d: name %q: want letters, digits, '.', '_', '-' or '@', at most 64, starting with a letter or digit", i, tok.Name)
		}
		if names[tok.Name] {
			return nil, fmt.Errorf("admin token %q: the name is used twice", tok.Name)
		}
		names[tok.Name] = true
		if tok.Role != RoleRead && tok.Role != RoleWrite {
			return nil, fmt.Errorf("admin token %q: role must be read or write, not %q", tok.Name, tok.Role)
		}
		if tok.Secret == "" {
			return nil, fmt.Errorf("admin token %q: the token is empty", tok.Name)
		}
		sum := sha256.Sum256([]byte(tok.Secret))
		if other, dup := sums[sum]; dup {
			return nil, fmt.Errorf("admin token %q: the same token as %q; each name needs its own token, or the audit log cannot tell them apart", tok.Name, other)
		}
		sums[sum] = tok.Name
		t.hashes = append(t.hashes, tokenHash{sum: sum, who: Principal{Name: tok.Name, Role: tok.Role}})
	}
	return t, nil
}

// Authenticate implements Authenticator: no Authorization header is ErrNoCredential; another scheme or a token
// none of the hashes matches is ErrBadCredential.
func (t *Tokens) Authenticate(r *http.Request) (Principal, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return Principal{}, ErrNoCredential
	}
	tok, ok := httpauth.Bearer(h)
	if !ok {
		return Principal{}, ErrBadCredential
	}
	sum := sha256.Sum256([]byte(tok))
	found := -1
	for i := range t.hashes {
		eq := subtle.ConstantTimeCompare(sum[:], t.hashes[i].sum[:])
		found = subtle.ConstantTimeSelect(eq, i, found)
	}
	if found < 0 {
		return Principal{}, ErrBadCredential
	}
	return t.hashes[found].who, nil
}

// ClientCerts authenticates a request by the TLS client certificate the listener verified: the listener's
// tls.Config has ClientCAs and ClientAuth tls.VerifyClientCertIfGiven (or stricter), so a certificate that does not
// chain to the client CA never gets past the handshake. Only verified chains count; a certificate that was merely
// presented does not.
type ClientCerts struct {
	byCN        map[string]Principal
	defaultRole Role
}

var _ Authenticator = (*ClientCerts)(nil)

// NewClientCerts returns the authenticator of verified client certificates. byCommonName maps a certificate's
// subject common name to the principal it authenticates; a verified certificate whose common name it does not hold
// authenticates as a principal named by its common name with defaultRole, and is refused when defaultRole is ""
// (or its common name is not a valid name).
func NewClientCerts(byCommonName map[string]Principal, defaultRole Role) (*ClientCerts, error) {
	if defaultRole != "" && defaultRole != RoleRead && defaultRole != RoleWrite {
		return nil, fmt.Errorf("client certificates: default role must be read, write or none, not %q", defaultRole)
	}
	c := &ClientCerts{byCN: make(map[string]Principal, len(byCommonName)), defaultRole: defaultRole}
	for cn, p := range byCommonName {
		if cn == "" {
			return nil, errors.New("client certificates: a mapping has no common name")
		}
		if !validName.MatchString(p.Name) {
			return nil, fmt.Errorf("client certificate %q: name %q: want letters, digits, '.', '_', '-' or '@', at most 64", cn, p.Name)
		}
		if p.Role != RoleRead && p.Role != RoleWrite {
			return nil, fmt.Errorf("client certificate %q: role must be read or write, not %q", cn, p.Role)
		}
		c.byCN[cn] = p
	}
	return c, nil
}

// Authenticate implements Authenticator: no verified client certificate is ErrNoCredential; a verified one that no
// mapping names while there is no default role is ErrBadCredential.
func (c *ClientCerts) Authenticate(r *http.Request) (Principal, error) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return Principal{}, ErrNoCredential
	}
	cn := r.TLS.VerifiedChains[0][0].Subject.CommonName
	if p, ok := c.byCN[cn]; ok {
		return p, nil
	}
	if c.defaultRole == "" || !validName.MatchString(cn) {
		return Principal{}, ErrBadCredential
	}
	return Principal{Name: cn, Role: c.defaultRole}, nil
}

// AnyOf returns an Authenticator that asks each of auths in turn and takes the first principal: a request may
// carry a bearer token or a client certificate. When none accepts, the answer is ErrBadCredential if any of them
// was handed a credential it refused, else ErrNoCredential.
func AnyOf(auths ...Authenticator) Authenticator { return anyOf(auths) }

type anyOf []Authenticator

func (as anyOf) Authenticate(r *http.Request) (Principal, error) {
	err := ErrNoCredential
	for _, a := range as {
		p, e := a.Authenticate(r)
		if e == nil {
			return p, nil
		}
		if !errors.Is(e, ErrNoCredential) {
			err = e
		}
	}
	return Principal{}, err
}

// The failure limit's defaults (WithFailureLimit).
const (
	DefaultMaxFailures   = 10
	DefaultFailureWindow = time.Minute
	DefaultFailureBlock  = 5 * time.Minute
	// maxTrackedAddrs bounds the limiter's memory (about 100 bytes an address): past it, addresses whose window
	// and block are over go first, then any.
	maxTrackedAddrs = 10000
)

// WithFailureLimit sets how many refused credentials (a wrong token, a certificate no mapping admits; a request
// with no credential at all does not count) one client address may send within window before every request from
// it gets 429 TOOMANYREQUESTS with Retry-After for block. The count is per address, so an attacker blocks only
// their own address, never a token holder's elsewhere. Defaults 10, 1m, 5m.
func WithFailureLimit(max int, window, block time.Duration) Option {
	return func(a *API) error {
		if max <= 0 || window <= 0 || block <= 0 {
			return fmt.Errorf("admin: failure limit: want a positive count, window and block, not %d, %s, %s", max, window, block)
		}
		a.limiter = newFailureLimiter(max, window, block)
		return nil
	}
}

// failureLimiter counts refused credentials per client address in fixed windows and blocks an address that
// reaches the limit. A success does not reset the count: a holder of one token must not be able to interleave
// guesses at another.
type failureLimiter struct {
	max           int
	window, block time.Duration

	mu    sync.Mutex
	addrs map[string]*failureCount
}

type failureCount struct {
	since time.Time // the window's start
	n     int
	until time.Time // blocked until; zero when not blocked
}

func newFailureLimiter(max int, window, block time.Duration) *failureLimiter {
	return &failureLimiter{max: max, window: window, block: block, addrs: map[string]*failureCount{}}
}

// blocked says how much longer addr is blocked at now; 0 when it is not.
func (l *failureLimiter) blocked(addr string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if f, ok := l.addrs[addr]; ok && now.Before(f.until) {
		return f.until.Sub(now)
	}
	return 0
}

// fail counts a refused credential from addr at now; it returns the block when this failure starts one, else 0.
func (l *failureLimiter) fail(addr string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	f, ok := l.addrs[addr]
	if !ok {
		l.makeRoom(now)
		f = &failureCount{since: now}
		l.addrs[addr] = f
	}
	if now.Sub(f.since) >= l.window {
		f.since, f.n = now, 0
	}
	f.n++
	if f.n >= l.max && !now.Before(f.until) {
		f.until = now.Add(l.block)
		f.since, f.n = now, 0 // the next block needs another max failures after this one ends
		return l.block
	}
	return 0
}

// makeRoom keeps the map under maxTrackedAddrs: when it is full, addresses neither counting nor blocked go, and if
// that frees less than a tenth, arbitrary others until a tenth is free (so the scan runs once per thousand new
// addresses, not on each). An attacker with that many addresses gains nothing by crowding out their own entries
// that they could not gain by using a fresh address.
func (l *failureLimiter) makeRoom(now time.Time) {
	if len(l.addrs) < maxTrackedAddrs {
		return
	}
	for k, f := range l.addrs {
		if now.Sub(f.since) >= l.window && !now.Before(f.until) {
			delete(l.addrs, k)
		}
	}
	for k := range l.addrs {
		if len(l.addrs) <= maxTrackedAddrs-maxTrackedAddrs/10 {
			return
		}
		delete(l.addrs, k)
	}
}

// clientAddr is the address a request's failures are counted against: the peer's IP (never a forwarding header,
// which the client writes), an IPv6 address by its /64, since one host commonly holds a whole /64.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip := net.ParseIP(host)
	switch {
	case ip == nil:
		return host
	case ip.To4() != nil:
		return ip.To4().String()
	default:
		return (&net.IPNet{IP: ip.Mask(net.CIDRMask(64, 128)), Mask: net.CIDRMask(64, 128)}).String()
	}
}

// challenge is the WWW-Authenticate header of a 401 (RFC 6750): invalid_token when a credential was refused.
func challenge(err error) string {
	if errors.Is(err, ErrNoCredential) {
		return `Bearer realm="portcullis-admin"`
	}
	return `Bearer realm="portcullis-admin", error="invalid_token"`
}

// authenticate says who sent r, or answers it: 429 while its address is blocked, 401 without a valid credential.
// Refused credentials are logged and counted against the address.
func (a *API) authenticate(w http.ResponseWriter, r *http.Request) (Principal, bool) {
	addr, now := clientAddr(r), a.now()
	if wait := a.limiter.blocked(addr, now); wait > 0 {
		secs := int((wait + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		adminError(w, http.StatusTooManyRequests, "TOOMANYREQUESTS",
			fmt.Sprintf("too many refused admin credentials from %s; try again in %ds", addr, secs))
		return Principal{}, false
	}
	who, err := a.auth.Authenticate(r)
	if err == nil {
		return who, true
	}
	if errors.Is(err, ErrNoCredential) {
		a.log.Warn("admin request refused: no credential", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
	} else {
		a.log.Warn("admin request refused: credential not valid", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "error", err)
		if block := a.limiter.fail(addr, now); block > 0 {
			a.log.Warn("admin: too many refused credentials from one address; it is refused for a while", "addr", addr,
				"failures", a.limiter.max, "window", a.limiter.window.String(), "block", block.String())
		}
	}
	w.Header().Set("WWW-Authenticate", challenge(err))
	adminError(w, http.StatusUnauthorized, "UNAUTHORIZED", err.Error())
	return Principal{}, false
}
