// Command portcullis-image builds the Portcullis container image without a container engine: a static binary on
// an empty base, run as a non-root user, with OCI labels for the version and source. It writes an OCI image
// layout archive (what `ctr images import` and `skopeo copy oci-archive:` read) and can push the image.
//
// Usage:
//
//	portcullis-image --binary FILE [--arch GOARCH] [--ca-bundle FILE] [--version V] [--source URL] [--revision SHA]
//	                 [--name portcullis:dev] [--out bin/portcullis-image.tar] [--push REGISTRY/REPO:TAG]
//
// `make image` builds the binary (CGO_ENABLED=0) and runs this; `make image REGISTRY=host/repo` also pushes.
// The creation time is SOURCE_DATE_EPOCH when set (else 0), so the same inputs give the same image digest.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run returns the exit code: 0 done, 1 failed, 2 a usage error.
func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("portcullis-image", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := buildOptions{}
	var imageName, out, push string
	fs.StringVar(&o.binary, "binary", "", "the static Linux portcullis binary (required; build it with CGO_ENABLED=0)")
	fs.StringVar(&o.arch, "arch", runtime.GOARCH, "GOARCH the binary was built for")
	fs.StringVar(&o.caBundle, "ca-bundle", "", "PEM CA bundle for /etc/ssl/certs/ca-certificates.crt (default: none; upstream TLS then needs caFile)")
	fs.StringVar(&o.version, "version", "dev", "org.opencontainers.image.version")
	fs.StringVar(&o.source, "source", "https://github.com/portcullis/portcullis", "org.opencontainers.image.source")
	fs.StringVar(&o.revision, "revision", "", "org.opencontainers.image.revision (the commit)")
	fs.StringVar(&imageName, "name", "portcullis:dev", "image name recorded in the archive")
	fs.StringVar(&out, "out", "bin/portcullis-image.tar", "OCI layout archive to write (\"\" = none)")
	fs.StringVar(&push, "push", "", "also push the image to this reference, e.g. registry.example.com/portcullis:v1 (credentials from ~/.docker/config.json)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if o.binary == "" || fs.NArg() > 0 || (out == "" && push == "") {
		fmt.Fprintln(stderr, "portcullis-image: --binary is required, takes no arguments, and needs --out or --push")
		return 2
	}
	if _, err := name.ParseReference(imageName); err != nil {
		fmt.Fprintf(stderr, "portcullis-image: --name %q: %v\n", imageName, err)
		return 2
	}
	o.created = time.Unix(0, 0).UTC()
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		sec, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			fmt.Fprintf(stderr, "portcullis-image: SOURCE_DATE_EPOCH %q: %v\n", s, err)
			return 2
		}
		o.created = time.Unix(sec, 0).UTC()
	}
	img, err := buildImage(o)
	if err != nil {
		fmt.Fprintln(stderr, "portcullis-image:", err)
		return 1
	}
	dgst, err := img.Digest()
	if err != nil {
		fmt.Fprintln(stderr, "portcullis-image:", err)
		return 1
	}
	if out != "" {
		if err := writeArchive(img, imageName, out); err != nil {
			fmt.Fprintln(stderr, "portcullis-image:", err)
			return 1
		}
		fmt.Fprintf(stdout, "wrote %s (%s, %s)\n", out, imageName, dgst)
	}
	if push != "" {
		ref, err := name.ParseReference(push)
		if err != nil {
			fmt.Fprintf(stderr, "portcullis-image: --push %q: %v\n", push, err)
			return 2
		}
		if err := remote.Write(ref, img, remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
			fmt.Fprintln(stderr, "portcullis-image: push:", err)
			return 1
		}
		fmt.Fprintf(stdout, "pushed %s@%s\n", ref, dgst)
	}
	return 0
}
