package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/cache/cachetest"
	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/internal/cosigntest"
	"github.com/portcullis/portcullis/internal/registrytest"
)

const fleetToken = "fleet-admin-token-0123456789"

// fleet is two replicas sharing one real redis-server, one upstream and one policy.
type fleet struct {
	up      *registrytest.Registry
	redis   *cachetest.RedisServer
	a, b    *app
	bin     string
	release string // private key
	key     []byte // the state key
}

func startFleet(t *testing.T) *fleet {
	t.Helper()
	// Redis as a fleet should run it: TLS with client certificates, an ACL user, persistence.
	f := &fleet{up: registrytest.New(t), redis: cachetest.StartRedisServer(t, cachetest.RedisServerOptions{Persist: true, TLS: true,
		ClientCerts: true, Users: []string{"default off", "portcullis on >fleet-pass ~* &* +@all"}}),
		bin: cosigntest.Binary(t), key: bytes.Repeat([]byte{7}, 32)}
	f.startReplicas(t, "", configs.Redis{Addrs: []string{f.redis.Addr}, KeyPrefix: "fleet:", Username: "portcullis", Password: "fleet-pass",
		TLS: configs.RedisTLS{CAFile: f.redis.TLS.CAFile, CertFile: f.redis.TLS.ClientCert, KeyFile: f.redis.TLS.ClientKey}})
	return f
}

// startReplicas makes f's release key, writes f's state key and a policy that requires the release key's signature
// (with policyMore appended under default:), and starts f's two replicas on redis.
func (f *fleet) startReplicas(t *testing.T, policyMore string, redis configs.Redis) {
	t.Helper()
	priv, pub := cosigntest.KeyPair(t)
	f.release = priv
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "state.key")
	pol := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(f.key)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pol, []byte("trust:\n  release: {key: "+pub+"}\ndefault:\n  signedBy: {anyOf: [release]}\n"+policyMore), 0o600); err != nil {
		t.Fatal(err)
	}
	replica := func() *app {
		a, _, _ := startApp(t, f.up, &cachetest.SyncBuilder{}, func(cfg *configs.Config) {
			cfg.Policy = pol
			cfg.Shutdown.DrainDelay = 0
			cfg.Cache.StateKeyFile = keyFile
			cfg.Cache.Redis = redis
			cfg.Admin = configs.Admin{Listen: "127.0.0.1:0", Token: fleetToken}
		})
		return a
	}
	f.a, f.b = replica(), replica()
}

// pushAdmittedAndDenied pushes two signed images, repo/good:v1 and repo/bad:v1, has both replicas pull the good one
// and denies the bad one's digest on A; it returns both digests.
func (f *fleet) pushAdmittedAndDenied(t *testing.T, repo string) (good, bad v1.Hash) {
	t.Helper()
	_, good = f.push(t, repo+"/good:v1", true)
	_, bad = f.push(t, repo+"/bad:v1", true)
	for _, r := range []*app{f.a, f.b} {
		if _, err := crane.Pull(r.addr.String()+"/"+repo+"/good:v1", crane.Insecure); err != nil {
			t.Fatal(err)
		}
	}
	if code, body := adminCall(t, f.a, http.MethodPost, "/admin/v1/deny",
		fmt.Sprintf(`{"match": %q, "reason": "withdrawn"}`, f.up.Host()+"/"+repo+"/bad@"+bad.String())); code != http.StatusCreated {
		t.Fatalf("deny: %d %s", code, body)
	}
	return good, bad
}

// push pushes a random image, signed with the release key when signed, and returns its digest.
func (f *fleet) push(t *testing.T, repoTag string, signed bool) (v1.Image, v1.Hash) {
	t.Helper()
	img := f.up.PushRandomImage(t, repoTag, 1, 2048)
	d, _ := img.Digest()
	if signed {
		repo, _, _ := strings.Cut(repoTag, ":")
		cosigntest.Sign(t, f.bin, f.up.Ref(repo+"@"+d.String()), f.release)
	}
	return img, d
}

// get fetches path from the replica's registry listener and returns the status and the Warning header.
func get(t *testing.T, a *app, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + a.addr.String() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header.Get("Warning")
}

// admin sends an admin API request to the replica and returns the status and body.
func adminCall(t *testing.T, a *app, method, path, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+a.adminAddr.String()+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+fleetToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// answersWithin polls path on the replica until it answers code or d has passed, and reports how long it took.
func answersWithin(t *testing.T, a *app, path string, code int, d time.Duration) (time.Duration, bool) {
	t.Helper()
	return within(d, func() bool { c, _ := get(t, a, path); return c == code })
}

// within polls until cond holds or d has passed, and reports how long it took.
func within(d time.Duration, cond func() bool) (time.Duration, bool) {
	start := time.Now()
	for {
		if cond() {
			return time.Since(start), true
		}
		if time.Since(start) > d {
			return time.Since(start), false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestFleetListsAndRevocation: two replicas on one Redis act as one proxy. A deny posted on A refuses the digest's
// manifest and blobs on A and B within a second of the 201, cached admissions included; an allow entry serves an
// unsigned image loudly and its removal ends that within a second; a decision made on A is reused by B.
func TestFleetListsAndRevocation(t *testing.T) {
	f := startFleet(t)
	img, d := f.push(t, "fleet/app:v1", true)
	layers, _ := img.Layers()
	layer, _ := layers[0].Digest()

	t.Run("a decision made on A is reused by B", func(t *testing.T) {
		if _, err := crane.Pull(f.a.addr.String()+"/fleet/app:v1", crane.Insecure); err != nil {
			t.Fatal(err)
		}
		f.up.Hits().Reset()
		if _, err := crane.Pull(f.b.addr.String()+"/fleet/app:v1", crane.Insecure); err != nil {
			t.Fatal(err)
		}
		if n := f.up.Hits().CountPath(http.MethodGet, "/v2/fleet/app/manifests/sha256-"+d.Hex+".sig"); n != 0 {
			t.Errorf("B verified again: %d signature look-ups", n)
		}
	})
	t.Run("a deny on A refuses manifest and blobs on A and B within a second", func(t *testing.T) {
		code, body := adminCall(t, f.a, http.MethodPost, "/admin/v1/deny",
			fmt.Sprintf(`{"match": %q, "reason": "CVE-2024-3094 in the base"}`, f.up.Host()+"/fleet/app@"+d.String()))
		if code != http.StatusCreated {
			t.Fatalf("POST deny: %d %s", code, body)
		}
		for _, r := range []*app{f.a, f.b} {
			took, ok := within(time.Second, func() bool {
				mc, _ := get(t, r, "/v2/fleet/app/manifests/"+d.String())
				bc, _ := get(t, r, "/v2/fleet/app/blobs/"+layer.String())
				hc, _ := get(t, r, "/v2/fleet/app/manifests/v1")
				return mc == http.StatusForbidden && bc == http.StatusForbidden && hc == http.StatusForbidden
			})
			if !ok {
				t.Fatalf("replica %s still serves the denied digest a second after the 201", r.addr)
			}
			t.Logf("replica %s refuses the denied digest %s after the 201", r.addr, took.Round(time.Millisecond))
		}
		var entries struct {
			Entries []struct{ ID string } `json:"entries"`
		}
		_, body = adminCall(t, f.b, http.MethodGet, "/admin/v1/deny", "")
		if json.Unmarshal([]byte(body), &entries) != nil || len(entries.Entries) != 1 {
			t.Fatalf("B lists %s", body)
		}
		if code, body := adminCall(t, f.b, http.MethodDelete, "/admin/v1/deny/"+entries.Entries[0].ID, ""); code != http.StatusNoContent {
			t.Fatalf("DELETE on B: %d %s", code, body)
		}
		if _, ok := answersWithin(t, f.a, "/v2/fleet/app/manifests/v1", http.StatusOK, time.Second); !ok {
			t.Error("A still denies a second after the entry was removed on B")
		}
	})
	t.Run("an allow entry serves an unsigned image loudly, until it is removed", func(t *testing.T) {
		_, ud := f.push(t, "fleet/hotfix:v1", false)
		if c, _ := get(t, f.b, "/v2/fleet/hotfix/manifests/v1"); c != http.StatusForbidden {
			t.Fatalf("unsigned image: %d", c)
		}
		code, body := adminCall(t, f.a, http.MethodPost, "/admin/v1/allow",
			fmt.Sprintf(`{"match": %q, "reason": "incident 42", "expires": %q}`, f.up.Host()+"/fleet/hotfix@"+ud.String(),
				time.Now().Add(time.Hour).UTC().Format(time.RFC3339)))
		if code != http.StatusCreated {
			t.Fatalf("POST allow: %d %s", code, body)
		}
		var created struct{ ID string }
		_ = json.Unmarshal([]byte(body), &created)
		var warn string
		if _, ok := within(time.Second, func() bool {
			var c int
			c, warn = get(t, f.b, "/v2/fleet/hotfix/manifests/v1")
			return c == http.StatusOK
		}); !ok {
			t.Fatal("B does not serve the allow-listed image within a second")
		}
		if !strings.Contains(warn, "break-glass") || !strings.Contains(warn, created.ID) {
			t.Errorf("Warning %q does not say break-glass and the entry", warn)
		}
		if _, err := crane.Pull(f.b.addr.String()+"/fleet/hotfix:v1", crane.Insecure); err != nil {
			t.Errorf("pull through the allow entry: %v", err)
		}
		_, body = adminCall(t, f.a, http.MethodGet, "/admin/v1/audit?kind=break-glass", "")
		if !strings.Contains(body, created.ID) {
			t.Errorf("no break-glass audit record on A for a pull on B: %s", body)
		}
		if code, _ := adminCall(t, f.a, http.MethodDelete, "/admin/v1/allow/"+created.ID, ""); code != http.StatusNoContent {
			t.Fatalf("DELETE allow: %d", code)
		}
		if _, ok := answersWithin(t, f.b, "/v2/fleet/hotfix/manifests/v1", http.StatusForbidden, time.Second); !ok {
			t.Error("B still serves the image a second after its allow entry was removed")
		}
		_, body = adminCall(t, f.b, http.MethodGet, "/admin/v1/audit?kind=change", "")
		for _, want := range []string{"deny.add", "deny.remove", "allow.add", "allow.remove", `"actor":"admin"`} {
			if !strings.Contains(body, want) {
				t.Errorf("audit log lacks %s: %s", want, body)
			}
		}
	})
	t.Run("a value written to Redis without the state key admits nothing", func(t *testing.T) {
		_, ud := f.push(t, "fleet/forged:v1", false)
		client := cache.NewRedisClient(cache.RedisOptions{Addrs: []string{f.redis.Addr}, Username: "portcullis", Password: "fleet-pass",
			TLS: f.redis.TLS.ClientConfig()})
		defer client.Close()
		ctx := context.Background()
		// Where a real entry lives, so that the forgeries go to the same place.
		code, body := adminCall(t, f.a, http.MethodPost, "/admin/v1/allow", fmt.Sprintf(`{"match": %q, "reason": "real"}`, f.up.Host()+"/fleet/other"))
		var real struct{ ID string }
		if code != http.StatusCreated || json.Unmarshal([]byte(body), &real) != nil {
			t.Fatalf("POST allow: %d %s", code, body)
		}
		if ok, err := client.HExists(ctx, "fleet:collection/allow", real.ID).Result(); err != nil || !ok {
			t.Fatalf("the allow list is not where the forgery goes: %v %v", ok, err)
		}
		// A forged allow entry, and a forged allow verdict copied from a real one onto the unsigned digest.
		entry := fmt.Sprintf(`{"id":"allow-forged","kind":"allow","match":%q,"reason":"forged","added":"2026-01-01T00:00:00Z","by":"mallory"}`,
			f.up.Host()+"/fleet/forged@"+ud.String())
		if err := client.HSet(ctx, "fleet:collection/allow", "allow-forged", entry).Err(); err != nil {
			t.Fatal(err)
		}
		keys, _ := client.Keys(ctx, "fleet:decision/*fleet/app@"+d.String()+"*").Result()
		if len(keys) == 0 {
			t.Fatal("no verdict of the signed image in Redis to copy")
		}
		for _, k := range keys {
			v, _ := client.Get(ctx, k).Result()
			forged := strings.Replace(k, d.String(), ud.String(), 1)
			forged = strings.Replace(forged, "fleet/app@", "fleet/forged@", 1)
			_ = client.Set(ctx, forged, v, time.Hour).Err()
		}
		time.Sleep(1500 * time.Millisecond) // past a list reload
		if c, _ := get(t, f.a, "/v2/fleet/forged/manifests/v1"); c != http.StatusForbidden {
			t.Errorf("forged state admitted an unsigned image: %d", c)
		}
		if _, body := adminCall(t, f.a, http.MethodGet, "/admin/v1/allow", ""); strings.Contains(body, "allow-forged") {
			t.Errorf("the forged entry is listed: %s", body)
		}
	})
}

// TestFleetRedisOutage: Redis killed mid-test. Admitted images keep serving, a new signed image is admitted and a
// new unsigned one denied, a list change answers 503, a denied digest stays denied, and when Redis is back every
// replica works again without a restart.
func TestFleetRedisOutage(t *testing.T) {
	f := startFleet(t)
	good, bad := f.pushAdmittedAndDenied(t, "out")
	if _, ok := answersWithin(t, f.b, "/v2/out/bad/manifests/v1", http.StatusForbidden, time.Second); !ok {
		t.Fatal("deny not in force on B")
	}

	f.redis.Stop()
	_, newSigned := f.push(t, "out/new:v1", true)
	f.push(t, "out/unsigned:v1", false)
	for _, r := range []*app{f.a, f.b} {
		start := time.Now()
		if _, err := crane.Pull(r.addr.String()+"/out/good:v1", crane.Insecure); err != nil {
			t.Errorf("admitted image with Redis down: %v", err)
		}
		if c, _ := get(t, r, "/v2/out/new/manifests/"+newSigned.String()); c != http.StatusOK {
			t.Errorf("new signed image with Redis down: %d", c)
		}
		if c, _ := get(t, r, "/v2/out/unsigned/manifests/v1"); c != http.StatusForbidden {
			t.Errorf("new unsigned image with Redis down: %d", c)
		}
		if c, _ := get(t, r, "/v2/out/bad/manifests/"+bad.String()); c != http.StatusForbidden {
			t.Errorf("denied digest served with Redis down: %d", c)
		}
		t.Logf("replica %s answered four pulls with Redis down in %s", r.addr, time.Since(start).Round(time.Millisecond))
	}
	if code, body := adminCall(t, f.a, http.MethodPost, "/admin/v1/deny", fmt.Sprintf(`{"match": %q, "reason": "x"}`, f.up.Host()+"/out/good")); code != http.StatusServiceUnavailable {
		t.Errorf("list change with Redis down: %d %s, want 503", code, body)
	}
	if c, body := httpGet(t, "http://"+f.a.opsAddr.String()+"/readyz"); c != http.StatusOK || !strings.Contains(body, "degraded") {
		t.Errorf("/readyz with Redis down: %d %q, want 200 degraded", c, body)
	}

	f.redis.Restart()
	if _, ok := within(10*time.Second, func() bool {
		code, _ := adminCall(t, f.b, http.MethodPost, "/admin/v1/deny", fmt.Sprintf(`{"match": %q, "reason": "after"}`, f.up.Host()+"/out/unsigned"))
		return code == http.StatusCreated
	}); !ok {
		t.Fatal("list changes still fail 10s after Redis came back")
	}
	if _, ok := within(5*time.Second, func() bool {
		c, body := httpGet(t, "http://"+f.a.opsAddr.String()+"/readyz")
		return c == http.StatusOK && !strings.Contains(body, "degraded")
	}); !ok {
		t.Error("/readyz still degraded after Redis came back")
	}
	// What was decided during the outage reaches Redis once it is back, without a pull asking for it: another
	// replica then serves it with no verification of its own.
	rdb := fleetRedisClient(t, f)
	if _, ok := within(15*time.Second, func() bool {
		keys, _ := rdb.Keys(context.Background(), "fleet:decision/*/out/new@"+newSigned.String()+"#0").Result()
		return len(keys) > 0
	}); !ok {
		t.Error("the decision made during the outage is not in Redis 15s after it came back")
	}
	f.up.Hits().Reset()
	for _, r := range []*app{f.a, f.b} {
		if c, _ := get(t, r, "/v2/out/new/manifests/"+newSigned.String()); c != http.StatusOK {
			t.Errorf("image decided during the outage, after Redis came back: %d", c)
		}
	}
	if n := f.up.Hits().CountPath(http.MethodGet, "/v2/out/new/manifests/sha256-"+newSigned.Hex+".sig"); n != 0 {
		t.Errorf("%d signature look-ups after Redis came back: the decision made during the outage was not shared", n)
	}
	for _, r := range []*app{f.a, f.b} {
		if c, _ := get(t, r, "/v2/out/good/manifests/"+good.String()); c != http.StatusOK {
			t.Errorf("after Redis came back: %d", c)
		}
		if c, _ := get(t, r, "/v2/out/bad/manifests/"+bad.String()); c != http.StatusForbidden {
			t.Errorf("denied digest after Redis came back: %d", c)
		}
	}
}

// fleetRedisClient is a plain client of the fleet's Redis, to look at what the replicas stored.
func fleetRedisClient(t *testing.T, f *fleet) *redis.Client {
	t.Helper()
	ca, err := os.ReadFile(f.redis.TLS.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	cert, err := tls.LoadX509KeyPair(f.redis.TLS.ClientCert, f.redis.TLS.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: f.redis.Addr, Username: "portcullis", Password: "fleet-pass",
		TLSConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// A report that replaces another is what every replica decides on next: B, which decided on the clean report (and
// kept a copy in its local tier), must not decide again on that copy when the failing report's new facts epoch
// reaches it (the copy would have been admitted under the new epoch for the decision's life).
func TestFleetReportReplacedOnAnotherReplica(t *testing.T) {
	srv := cachetest.StartRedisServer(t, cachetest.RedisServerOptions{})
	f := &fleet{up: registrytest.New(t), redis: srv, bin: cosigntest.Binary(t), key: bytes.Repeat([]byte{9}, 32)}
	f.startReplicas(t, "  scan: {maxSeverity: medium, sources: [ci]}\n", configs.Redis{Addrs: []string{srv.Addr}, KeyPrefix: "rep:"})
	_, d := f.push(t, "rep/app:v1", true)
	path := "/v2/rep/app/manifests/" + d.String()
	if code, body := adminCall(t, f.a, http.MethodPost, "/admin/v1/reports/"+d.String(), trivyReport("CVE-2026-1", "LOW")); code/100 != 2 {
		t.Fatalf("clean report on A: %d %s", code, body)
	}
	if _, ok := answersWithin(t, f.b, path, http.StatusOK, 5*time.Second); !ok {
		t.Fatal("B does not admit the signed image with a clean report")
	}
	if code, body := adminCall(t, f.a, http.MethodPost, "/admin/v1/reports/"+d.String(), trivyReport("CVE-2026-1", "CRITICAL")); code/100 != 2 {
		t.Fatalf("failing report on A: %d %s", code, body)
	}
	if _, ok := answersWithin(t, f.b, path, http.StatusForbidden, 5*time.Second); !ok {
		t.Fatal("B still admits the image 5s after a failing report replaced the clean one on A")
	}
	// And it stays refused: no decision on the old report was cached under the new epoch.
	time.Sleep(200 * time.Millisecond)
	if code, _ := get(t, f.b, path); code != http.StatusForbidden {
		t.Errorf("B: %d after refusing the image, want 403", code)
	}
}

// trivyReport is a Trivy JSON report of one image with one openssl vulnerability, id at severity (Trivy's words:
// LOW, CRITICAL), fixed in a later version.
func trivyReport(id, severity string) string {
	b, _ := json.Marshal(map[string]any{"SchemaVersion": 2, "CreatedAt": time.Now().Format(time.RFC3339), "ArtifactName": "app",
		"ArtifactType": "container_image", "Results": []map[string]any{{"Target": "app (debian 12.8)", "Class": "os-pkgs", "Type": "debian",
			"Vulnerabilities": []map[string]any{{"VulnerabilityID": id, "PkgName": "openssl", "InstalledVersion": "3.0.1",
				"FixedVersion": "3.0.15", "Severity": severity}}}}})
	return string(b)
}
