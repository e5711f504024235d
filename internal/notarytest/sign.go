package notarytest

import (
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/theupdateframework/notary/client"
	"github.com/theupdateframework/notary/passphrase"
	"github.com/theupdateframework/notary/storage"
	"github.com/theupdateframework/notary/trustpinning"
	"github.com/theupdateframework/notary/tuf/data"
)

// Collection is one trust collection (GUN) on a Server, with its signing keys held by the test.
type Collection struct {
	// GUN names the collection, e.g. 127.0.0.1:5000/library/app.
	GUN string
	// RootKeyPEM is the collection's root public key, PEM: what a policy pins.
	RootKeyPEM []byte
	repo       client.Repository
	server     *Server
	delegates  map[string]string // delegation role -> the ID of the key it is delegated to
}

// Init creates a collection as `docker trust sign` does the first time: a root key and a targets key made
// here, the snapshot and timestamp keys on the server, and one key for each delegation role named (e.g.
// "targets/releases", valid for every path); then publishes it.
func (s *Server) Init(t testing.TB, gun string, delegations ...string) *Collection {
	t.Helper()
	repo, err := client.NewFileCachedRepository(t.TempDir(), data.GUN(gun), s.URL, s.Transport,
		passphrase.ConstantRetriever("notarytest"), trustpinning.TrustPinConfig{})
	if err != nil {
		t.Fatalf("notarytest: %v", err)
	}
	cs := repo.GetCryptoService()
	delegates := map[string]string{}
	rootPub, err := cs.Create(data.CanonicalRootRole, data.GUN(gun), data.ECDSAKey)
	if err != nil {
		t.Fatalf("notarytest: root key: %v", err)
	}
	if err := repo.Initialize([]string{rootPub.ID()}, data.CanonicalSnapshotRole); err != nil {
		t.Fatalf("notarytest: initialize %s: %v", gun, err)
	}
	for _, d := range delegations {
		key, err := cs.Create(data.RoleName(d), data.GUN(gun), data.ECDSAKey)
		if err != nil {
			t.Fatalf("notarytest: %s key: %v", d, err)
		}
		if err := repo.AddDelegation(data.RoleName(d), []data.PublicKey{key}, []string{""}); err != nil {
			t.Fatalf("notarytest: add delegation %s: %v", d, err)
		}
		delegates[d] = key.ID()
	}
	if err := repo.Publish(); err != nil {
		t.Fatalf("notarytest: publish %s: %v", gun, err)
	}
	return &Collection{GUN: gun, RootKeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: rootPub.Public()}), repo: repo, server: s, delegates: delegates}
}

// Sign signs tag as the target dgst (size bytes) in role ("" for targets) and publishes, as `notary add` and
// `notary publish` (or `docker trust sign`) do.
func (c *Collection) Sign(t testing.TB, role, tag string, dgst digest.Digest, size int64) {
	t.Helper()
	var roles []data.RoleName
	if role != "" {
		roles = append(roles, data.RoleName(role))
	}
	if err := c.repo.AddTarget(target(t, tag, dgst, size), roles...); err != nil {
		t.Fatalf("notarytest: add %s: %v", tag, err)
	}
	if err := c.repo.Publish(); err != nil {
		t.Fatalf("notarytest: publish %s: %v\n%s", c.GUN, err, c.server.log.String())
	}
}

// RotateDelegationKey delegates role to a new key in place of its old one and publishes targets, as `notary
// delegation remove` and `notary delegation add` do when a delegation key leaks, without signing role again:
// the role's metadata on the server stays signed by the old key, which targets no longer delegates.
func (c *Collection) RotateDelegationKey(t testing.TB, role string) {
	t.Helper()
	old, ok := c.delegates[role]
	if !ok {
		t.Fatalf("notarytest: %s is not a delegation of %s", role, c.GUN)
	}
	key, err := c.repo.GetCryptoService().Create(data.RoleName(role), data.GUN(c.GUN), data.ECDSAKey)
	if err != nil {
		t.Fatalf("notarytest: %s key: %v", role, err)
	}
	if err := c.repo.AddDelegationRoleAndKeys(data.RoleName(role), []data.PublicKey{key}); err != nil {
		t.Fatalf("notarytest: delegate %s: %v", role, err)
	}
	if err := c.repo.RemoveDelegationKeys(data.RoleName(role), []string{old}); err != nil {
		t.Fatalf("notarytest: revoke %s key: %v", role, err)
	}
	if err := c.repo.Publish(); err != nil {
		t.Fatalf("notarytest: publish %s: %v\n%s", c.GUN, err, c.server.log.String())
	}
	c.delegates[role] = key.ID()
}

// SignExpiring signs tag in role like Sign, but with role's metadata expiring at expires (Publish always
// signs for years): how a test gets trust data that expires while it runs.
func (c *Collection) SignExpiring(t testing.TB, role, tag string, dgst digest.Digest, size int64, expires time.Time) {
	t.Helper()
	remote, err := storage.NewNotaryServerStore(c.server.URL, data.GUN(c.GUN), c.server.Transport)
	if err != nil {
		t.Fatal(err)
	}
	repo, _, err := client.LoadTUFRepo(client.TUFLoadOptions{GUN: data.GUN(c.GUN), CryptoService: c.repo.GetCryptoService(), RemoteStore: remote})
	if err != nil {
		t.Fatalf("notarytest: load %s: %v", c.GUN, err)
	}
	r := data.RoleName(role)
	if role == "" {
		r = data.CanonicalTargetsRole
	}
	tg := target(t, tag, dgst, size)
	if _, err := repo.AddTargets(r, data.Files{tag: data.FileMeta{Length: tg.Length, Hashes: tg.Hashes}}); err != nil {
		t.Fatalf("notarytest: add %s: %v", tag, err)
	}
	signed, err := repo.SignTargets(r, expires)
	if err != nil {
		t.Fatalf("notarytest: sign %s: %v", r, err)
	}
	b, err := json.Marshal(signed)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.SetMulti(map[string][]byte{r.String(): b}); err != nil {
		t.Fatalf("notarytest: upload %s: %v", r, err)
	}
}

// target is a Docker image target: the manifest's sha256 and size under the tag's name.
func target(t testing.TB, tag string, dgst digest.Digest, size int64) *client.Target {
	t.Helper()
	raw, err := hex.DecodeString(dgst.Encoded())
	if err != nil || dgst.Algorithm() != digest.SHA256 {
		t.Fatalf("notarytest: %s is not a sha256 digest", dgst)
	}
	return &client.Target{Name: tag, Hashes: data.Hashes{"sha256": raw}, Length: size}
}
