package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// serviceAccountDir is where the kubelet mounts a pod's service account token, CA and namespace.
const serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// kubeClient is the little of the Kubernetes API the node commands use (is a DaemonSet gone, post an Event),
// over plain HTTPS with the pod's service account: client-go would be most of the binary for two calls.
type kubeClient struct {
	base  string // https://host:port
	token string
	http  *http.Client
}

// inClusterKube builds a kubeClient from the pod's environment and service account mount.
func inClusterKube() (*kubeClient, error) {
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return nil, errors.New("not in a pod: KUBERNETES_SERVICE_HOST/PORT unset")
	}
	token, err := os.ReadFile(serviceAccountDir + "/token")
	if err != nil {
		return nil, err
	}
	ca, err := os.ReadFile(serviceAccountDir + "/ca.crt")
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, errors.New("service account ca.crt holds no certificate")
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	return newKubeClient("https://"+net.JoinHostPort(host, port), strings.TrimSpace(string(token)), &http.Client{Transport: tr})
}

func newKubeClient(base, token string, hc *http.Client) (*kubeClient, error) {
	u, err := url.Parse(base)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("kubernetes API address %q: want https://HOST:PORT", base)
	}
	if hc.Timeout == 0 {
		c := *hc
		c.Timeout = 30 * time.Second
		hc = &c
	}
	return &kubeClient{base: strings.TrimSuffix(base, "/"), token: token, http: hc}, nil
}

// do sends one request and decodes a JSON answer into out (when non-nil); it returns the status code, and an
// error for anything but 2xx and 404.
func (k *kubeClient) do(ctx context.Context, method, path string, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, k.base+path, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if k.token != "" {
		req.Header.Set("Authorization", "Bearer "+k.token)
	}
	resp, err := k.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode == http.StatusNotFound {
		return resp.StatusCode, nil
	}
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b[:min(len(b), 512)]))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	return resp.StatusCode, nil
}

// daemonSetGone reports whether the DaemonSet no longer exists or is being deleted.
func (k *kubeClient) daemonSetGone(ctx context.Context, namespace, name string) (bool, error) {
	var ds struct {
		Metadata struct {
			DeletionTimestamp *string `json:"deletionTimestamp"`
		} `json:"metadata"`
	}
	code, err := k.do(ctx, http.MethodGet, "/apis/apps/v1/namespaces/"+url.PathEscape(namespace)+"/daemonsets/"+url.PathEscape(name), nil, &ds)
	if err != nil {
		return false, err
	}
	return code == http.StatusNotFound || ds.Metadata.DeletionTimestamp != nil, nil
}

// kubeEvent is the core/v1 Event fields nodecheck sets (the API fills in the rest).
type kubeEvent struct {
	APIVersion     string          `json:"apiVersion"`
	Kind           string          `json:"kind"`
	Metadata       kubeMeta        `json:"metadata"`
	InvolvedObject kubeObjectRef   `json:"involvedObject"`
	Reason         string          `json:"reason"`
	Message        string          `json:"message"`
	Type           string          `json:"type"`
	Source         kubeEventSource `json:"source"`
	FirstTimestamp string          `json:"firstTimestamp"`
	LastTimestamp  string          `json:"lastTimestamp"`
	Count          int32           `json:"count"`
}

type kubeMeta struct {
	GenerateName string `json:"generateName,omitempty"`
	Namespace    string `json:"namespace,omitempty"`
}

type kubeObjectRef struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
	UID  string `json:"uid,omitempty"`
}

type kubeEventSource struct {
	Component string `json:"component"`
	Host      string `json:"host,omitempty"`
}

// nodeEvent posts an Event about node (in the default namespace, where node events live, so that
// `kubectl describe node` shows it).
func (k *kubeClient) nodeEvent(ctx context.Context, node, eventType, reason, message string, now time.Time) error {
	ts := now.UTC().Format(time.RFC3339)
	ev := kubeEvent{
		APIVersion:     "v1",
		Kind:           "Event",
		Metadata:       kubeMeta{GenerateName: node + ".portcullis-", Namespace: "default"},
		InvolvedObject: kubeObjectRef{Kind: "Node", Name: node, UID: node},
		Reason:         reason,
		Message:        message,
		Type:           eventType,
		Source:         kubeEventSource{Component: "portcullis-nodecheck", Host: node},
		FirstTimestamp: ts,
		LastTimestamp:  ts,
		Count:          1,
	}
	_, err := k.do(ctx, http.MethodPost, "/api/v1/namespaces/default/events", ev, nil)
	return err
}
