// Package integration holds Portcullis's end-to-end tests: a real upstream registry (CNCF Distribution,
// in-process), the real proxy with its real stores, and real clients (go-containerregistry, containerd's ctr).
package integration
