package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/portcullis/portcullis/configs"
)

// demo tells the whole story offline: an upstream registry in this process, a signed and an unsigned image made on
// the spot, Portcullis in front of it with a policy that wants the release key, and a client pulling both.
func demo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo", stderr)
	verbose := fs.Bool("v", false, "show the proxy's log")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	say := func(format string, a ...any) { fmt.Fprintf(stdout, format+"\n", a...) }
	dir, err := os.MkdirTemp("", "portcullis-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	// 1. An upstream registry.
	upLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	upSrv := &http.Server{Handler: ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = upSrv.Serve(upLn) }()
	defer upSrv.Close()
	upstream := upLn.Addr().String()
	say("1. upstream registry running at http://%s", upstream)

	// 2. Two images, one signed with cosign's libraries by a release key.
	key, err := newDemoKey()
	if err != nil {
		return err
	}
	signedDigest, err := pushRandom(upstream + "/demo/signed:v1")
	if err != nil {
		return err
	}
	unsignedDigest, err := pushRandom(upstream + "/demo/unsigned:v1")
	if err != nil {
		return err
	}
	if err := key.sign(signedDigest); err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	say("2. pushed demo/signed:v1 (signed with the release key) and demo/unsigned:v1 (no signature)")

	// 3. Portcullis with a policy: everything must be signed by the release key.
	if err := os.WriteFile(filepath.Join(dir, "release.pub"), key.pubPEM, 0o600); err != nil {
		return err
	}
	pol := "trust:\n  release: {key: release.pub}\ndefault:\n  mode: enforce\n  signedBy: {anyOf: [release]}\n"
	polPath := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(polPath, []byte(pol), 0o600); err != nil {
		return err
	}
	cfg := configs.Default()
	cfg.Listen, cfg.OpsListen, cfg.DataDir, cfg.Policy = "127.0.0.1:0", "", filepath.Join(dir, "data"), polPath
	cfg.Content.Parameters = map[string]any{"rootdirectory": filepath.Join(dir, "data", "content")}
	cfg.Shutdown.DrainDelay = 0
	u := configs.DefaultUpstreamFor(upstream)
	u.URL, u.Default = "http://"+upstream, true
	cfg.Upstreams = []configs.Upstream{u}
	if err := cfg.Validate(); err != nil {
		return err
	}
	logOut := io.Discard
	if *verbose {
		logOut = stderr
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	a, err := build(ctx, cfg, slog.New(slog.NewTextHandler(logOut, nil)))
	if err != nil {
		return err
	}
	defer a.Close()
	done, err := a.start(ctx)
	if err != nil {
		return err
	}
	proxy := a.addr.String()
	say("3. portcullis serving http://%s with policy:\n%s", proxy, indent(pol))

	// 4. Pull both through it.
	var failures []string
	img, err := crane.Pull(proxy+"/demo/signed:v1", crane.Insecure)
	if err == nil {
		var layers int
		if ls, lerr := img.Layers(); lerr == nil {
			for _, l := range ls {
				rc, lerr := l.Compressed()
				if lerr == nil {
					_, lerr = io.Copy(io.Discard, rc)
					rc.Close()
				}
				if lerr != nil {
					err = lerr
					break
				}
				layers++
			}
		}
		if err == nil {
			say("4. pull demo/signed:v1    -> SERVED %s (%d layers, every byte verified)", signedDigest.DigestStr(), layers)
		}
	}
	if err != nil {
		failures = append(failures, "the signed image was not served: "+err.Error())
	}
	_, err = crane.Pull(proxy+"/demo/unsigned:v1", crane.Insecure)
	if err != nil && strings.Contains(err.Error(), "DENIED") {
		say("5. pull demo/unsigned:v1  -> DENIED\n   %s", err)
	} else {
		failures = append(failures, fmt.Sprintf("the unsigned image was not denied: %v", err))
	}

	// 5. Knowing a layer digest of the denied image is not enough.
	unsigned, _ := remote.Image(unsignedDigest)
	ls, _ := unsigned.Layers()
	ld, _ := ls[0].Digest()
	resp, err := http.Get("http://" + proxy + "/v2/demo/unsigned/blobs/" + ld.String())
	if err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusForbidden {
			say("6. GET a layer of the denied image by digest -> %d\n   %s", resp.StatusCode, strings.TrimSpace(string(body)))
		} else {
			failures = append(failures, fmt.Sprintf("a blob of the denied image answered %d", resp.StatusCode))
		}
	} else {
		failures = append(failures, err.Error())
	}
	cancel()
	<-done
	if len(failures) > 0 {
		return errors.New("demo failed: " + strings.Join(failures, "; "))
	}
	say("\nThat is Portcullis: only what the policy can prove is served, and every refusal says why.")
	return nil
}

func pushRandom(ref string) (name.Digest, error) {
	img, err := random.Image(64<<10, 3)
	if err != nil {
		return name.Digest{}, err
	}
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return name.Digest{}, err
	}
	if err := remote.Write(r, img); err != nil {
		return name.Digest{}, err
	}
	d, _ := img.Digest()
	return r.Context().Digest(d.String()), nil
}

func indent(s string) string {
	return "   " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n   ")
}
