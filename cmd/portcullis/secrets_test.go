package main

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/crane"

	"github.com/portcullis/portcullis/cache/cachetest"
	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/internal/registrytest"
)

// TestSecretsNeverLogged: a real serve at debug level, with an upstream password (right, and wrong for a second
// upstream), Redis ACL credentials, the state (HMAC) key and admin tokens, is driven through pulls, failed pulls,
// admin calls with the right token and with a guessed one; no secret appears in its log or in any response body.
func TestSecretsNeverLogged(t *testing.T) {
	const (
		upstreamPW  = "upstream-secret-pw-7f3a"
		wrongPW     = "wrong-secret-pw-91c2"
		redisPW     = "redis-secret-pw-5d0e"
		adminToken  = "admin-secret-token-2b8c"
		guessedTok  = "guessed-secret-token-a4e1"
		readerToken = "reader-secret-token-c6f9"
	)
	srv := cachetest.StartRedisServer(t, cachetest.RedisServerOptions{Users: []string{"default off", "portcullis on >" + redisPW + " ~* &* +@all"}})
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	stateKey := base64.StdEncoding.EncodeToString(raw)
	keyFile := filepath.Join(t.TempDir(), "state.key")
	if err := os.WriteFile(keyFile, []byte(stateKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tokFile := filepath.Join(t.TempDir(), "reader.token")
	if err := os.WriteFile(tokFile, []byte(readerToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	up := registrytest.New(t, registrytest.WithBearerAuth("puller", upstreamPW))
	up.PushRandomImage(t, "team/app:v1", 1, 1024)
	other := registrytest.New(t, registrytest.WithBearerAuth("puller", upstreamPW))
	other.PushRandomImage(t, "team/app:v1", 1, 1024)

	logs := &cachetest.SyncBuilder{}
	a, done, cancel := startApp(t, up, logs, func(cfg *configs.Config) {
		cfg.Log.Level = "debug"
		cfg.Upstreams[0].Username, cfg.Upstreams[0].Password = "puller", upstreamPW
		wrong := configs.DefaultUpstreamFor(other.Host())
		wrong.URL, wrong.Username, wrong.Password, wrong.Retries = other.URL().String(), "puller", wrongPW, 1
		cfg.Upstreams = append(cfg.Upstreams, wrong)
		cfg.Cache.StateKeyFile = keyFile
		cfg.Cache.Redis = configs.Redis{Addrs: []string{srv.Addr}, Username: "portcullis", Password: redisPW}
		cfg.Admin.Listen, cfg.Admin.Token = "127.0.0.1:0", adminToken
		cfg.Admin.Tokens = append(cfg.Admin.Tokens, configs.AdminToken{Name: "ci", Role: "read", TokenFile: tokFile})
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
	})
	var bodies bytes.Buffer
	do := func(method, url, token string) {
		req, _ := http.NewRequest(method, url, strings.NewReader(`{"match":"x/**","reason":"r"}`))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		bodies.WriteString(resp.Status + " " + string(b) + "\n")
		for k, v := range resp.Header {
			bodies.WriteString(k + ": " + strings.Join(v, ",") + "\n")
		}
	}
	if _, err := crane.Pull(a.addr.String()+"/team/app:v1", crane.Insecure); err != nil {
		t.Fatalf("pull with the right upstream password: %v", err)
	}
	reg := "http://" + a.addr.String()
	do(http.MethodGet, reg+"/v2/team/app/manifests/v1?ns="+other.Host(), "")
	do(http.MethodHead, reg+"/v2/team/app/manifests/v1?ns="+other.Host(), "")
	do(http.MethodGet, reg+"/v2/team/app/manifests/v1", upstreamPW) // a client sending a secret of ours
	admin := "http://" + a.adminAddr.String() + "/admin/v1/deny"
	do(http.MethodGet, admin, adminToken)
	do(http.MethodGet, admin, readerToken)
	do(http.MethodPost, admin, readerToken) // read role on a write route
	do(http.MethodGet, admin, guessedTok)
	do(http.MethodPost, admin, guessedTok)
	do(http.MethodGet, admin, "")
	cancel()
	<-done

	if !strings.Contains(bodies.String(), "401") || !strings.Contains(bodies.String(), "403") {
		t.Fatalf("the test did not reach the refusals it meant to:\n%s", bodies.String())
	}
	basic := func(user, pw string) string { return base64.StdEncoding.EncodeToString([]byte(user + ":" + pw)) }
	for name, secret := range map[string]string{
		"upstream password": upstreamPW, "wrong upstream password": wrongPW, "Basic header": basic("puller", upstreamPW),
		"wrong Basic header": basic("puller", wrongPW), "Redis password": redisPW, "state key": stateKey,
		"admin token": adminToken, "guessed token": guessedTok, "read token": readerToken,
	} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the %s is in the log", name)
		}
		if strings.Contains(bodies.String(), secret) {
			t.Errorf("the %s is in a response", name)
		}
	}
	if t.Failed() {
		t.Logf("log:\n%s\nresponses:\n%s", logs.String(), bodies.String())
	}
}
