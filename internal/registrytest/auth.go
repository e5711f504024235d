package registrytest

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/portcullis/portcullis/internal/httpauth"
)

const (
	// tokenService is the service named in challenges and token requests.
	tokenService = "registrytest"
	// tokenTTL is how long an issued token stays valid.
	tokenTTL = 300 * time.Second
)

// tokenServer issues opaque bearer tokens (Docker token auth) and checks them
// at the registry's gate. The zero value is not usable; see newTokenServer.
type tokenServer struct {
	username, password string
	realm              string // <token server URL>/token, set once it listens

	mu     sync.Mutex
	tokens map[string]time.Time // token -> expiry
	issued int
}

func newTokenServer(username, password string) *tokenServer {
	return &tokenServer{username: username, password: password, tokens: map[string]time.Time{}}
}

// ServeHTTP answers GET /token (basic credentials in the header) and POST
// /token (OAuth2 form, grant_type=password, as containerd sends it).
func (s *tokenServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/token" {
		http.NotFound(w, r)
		return
	}
	user, pass, _ := r.BasicAuth()
	switch r.Method {
	case http.MethodGet:
	case http.MethodPost:
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if r.PostForm.Get("grant_type") == "password" {
			user, pass = r.PostForm.Get("username"), r.PostForm.Get("password")
		}
	default:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if s.username != "" && !s.credentialsMatch(user, pass) {
		w.Header().Set("WWW-Authenticate", `Basic realm="`+tokenService+`"`)
		writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", "bad credentials")
		return
	}
	token := randomHex(16)
	now := time.Now()
	s.mu.Lock()
	s.tokens[token] = now.Add(tokenTTL)
	s.issued++
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"token":        token,
		"access_token": token,
		"expires_in":   int(tokenTTL.Seconds()),
		"issued_at":    now.UTC().Format(time.RFC3339),
	})
}

func (s *tokenServer) credentialsMatch(user, pass string) bool {
	u := subtle.ConstantTimeCompare([]byte(user), []byte(s.username))
	p := subtle.ConstantTimeCompare([]byte(pass), []byte(s.password))
	return u&p == 1
}

// Issued returns how many tokens the server has handed out.
func (s *tokenServer) Issued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.issued
}

// valid reports whether token was issued here and has not expired.
func (s *tokenServer) valid(token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.tokens[token]
	return ok && time.Now().Before(exp)
}

// gate lets through requests that carry a valid token and challenges the rest.
func (s *tokenServer) gate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := httpauth.Bearer(r.Header.Get("Authorization"))
		if ok && s.valid(token) {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("WWW-Authenticate", s.challenge(r))
		writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
	})
}

// challenge builds the WWW-Authenticate value for r.
func (s *tokenServer) challenge(r *http.Request) string {
	c := fmt.Sprintf(`Bearer realm=%q,service=%q`, s.realm, tokenService)
	_, repo := classify(r.URL.Path)
	if repo == "" {
		return c
	}
	actions := "pull"
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		actions = "pull,push"
	}
	return c + fmt.Sprintf(`,scope="repository:%s:%s"`, repo, actions)
}

// writeError answers with an OCI distribution error body.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"errors": []map[string]string{{"code": code, "message": msg}},
	})
}
