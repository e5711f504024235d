package main

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	ocimutate "github.com/sigstore/cosign/v2/pkg/oci/mutate"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	"github.com/sigstore/cosign/v2/pkg/oci/static"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/payload"
)

// demoKey is a throwaway cosign-style signing key for the demo.
type demoKey struct {
	signer signature.SignerVerifier
	pubPEM []byte
}

func newDemoKey() (*demoKey, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	sv, err := signature.LoadECDSASignerVerifier(priv, crypto.SHA256)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		return nil, err
	}
	return &demoKey{signer: sv, pubPEM: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})}, nil
}

// sign writes a cosign signature (the classic sha256-<hex>.sig tag, as `cosign sign --key` does) for the image
// at ref, a digest reference, using cosign's own libraries.
func (k *demoKey) sign(ref name.Digest) error {
	pl, err := (&payload.Cosign{Image: ref}).MarshalJSON()
	if err != nil {
		return err
	}
	sig, err := k.signer.SignMessage(bytes.NewReader(pl))
	if err != nil {
		return err
	}
	ociSig, err := static.NewSignature(pl, base64.StdEncoding.EncodeToString(sig))
	if err != nil {
		return err
	}
	se, err := ociremote.SignedEntity(ref)
	if err != nil {
		return fmt.Errorf("read %s: %w", ref, err)
	}
	se, err = ocimutate.AttachSignatureToEntity(se, ociSig)
	if err != nil {
		return err
	}
	return ociremote.WriteSignatures(ref.Repository, se)
}
