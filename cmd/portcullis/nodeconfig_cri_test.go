package main

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/portcullis/portcullis/internal/containerdtest"
)

// TestCRIPullThroughPortcullis is kubelet's path: PullImage over the CRI API (the Go client kubelet uses) against
// a real containerd whose CRI plugin has config_path set to the directory `portcullis nodeconfig` wrote. A signed
// image pulls through Portcullis; an unsigned one fails with the denial in the CRI error (what kubelet puts in
// the pod's events), and containerd never asks the registry itself.
func TestCRIPullThroughPortcullis(t *testing.T) {
	var direct atomic.Int64
	a, up, sign := startSignedApp(t, &direct, nil)
	sign("cri/signed:v1")
	up.PushRandomImage(t, "cri/unsigned:v1", 2, 2048)
	hosts := t.TempDir()
	// The registry's own directory and _default: containerd's CRI plugin picks the first that exists.
	if code, out := nodeconfigRun(t, "--dir", hosts, "--portcullis", "http://"+a.addr.String(), up.Host(), "_default"); code != 0 {
		t.Fatalf("nodeconfig: exit %d: %s", code, out)
	}
	d := containerdtest.Start(t, containerdtest.WithCRI(hosts))

	conn, err := grpc.NewClient("unix://"+d.Address(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	images := runtimeapi.NewImageServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	signed := up.Ref("cri/signed:v1")
	resp, err := images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: signed}})
	if err != nil {
		t.Fatalf("CRI PullImage %s: %v", signed, err)
	}
	st, err := images.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: resp.ImageRef}})
	if err != nil || st.Image == nil {
		t.Fatalf("ImageStatus %s: %v %+v", resp.ImageRef, err, st)
	}
	if !contains(st.Image.RepoTags, signed) {
		t.Errorf("CRI has %v, want %s", st.Image.RepoTags, signed)
	}

	_, err = images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: up.Ref("cri/unsigned:v1")}})
	if err == nil {
		t.Fatal("CRI pulled the unsigned image")
	}
	for _, want := range []string{"403 portcullis: ", "cri/unsigned@sha256:", "not signed by release"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("CRI error lacks %q: %v", want, err)
		}
	}
	t.Logf("kubelet would show: %v", err)
	if n := direct.Load(); n != 0 {
		t.Errorf("containerd's CRI plugin sent %d requests to the registry itself", n)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
