package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// ownerCheckTimeout bounds the question "is the DaemonSet gone?" at exit; no answer keeps the files.
const ownerCheckTimeout = 10 * time.Second

// waitLoop keeps the node's files as written until ctx ends (SIGTERM), then removes them if the owning
// DaemonSet is gone. Any doubt keeps them: a node left pointing at an uninstalled Portcullis fails its pulls
// (loudly, and `nodeconfig --remove` fixes it), while a node cleaned during a rolling update would pull around
// Portcullis until the new pod starts.
func (o *nodeconfigOptions) waitLoop(ctx context.Context, stdout, stderr io.Writer) error {
	t := time.NewTicker(o.interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if err := o.writeAll(stdout); err != nil {
				fmt.Fprintln(stderr, "portcullis:", err)
			}
			continue
		case <-ctx.Done():
		}
		break
	}
	if o.owner == "" {
		fmt.Fprintln(stdout, "stopping; the files stay (no --owner)")
		return nil
	}
	kc, err := inClusterKube()
	if err != nil {
		fmt.Fprintf(stderr, "portcullis: cannot ask whether %s is gone, the files stay: %v\n", o.owner, err)
		return nil
	}
	return o.removeIfOwnerGone(kc, stdout, stderr)
}

// removeIfOwnerGone removes the files when the API says the DaemonSet no longer exists or is being deleted.
func (o *nodeconfigOptions) removeIfOwnerGone(kc *kubeClient, stdout, stderr io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), ownerCheckTimeout)
	defer cancel()
	ns, name, _ := strings.Cut(o.owner, "/")
	gone, err := kc.daemonSetGone(ctx, ns, name)
	if err != nil {
		fmt.Fprintf(stderr, "portcullis: cannot ask whether %s is gone, the files stay: %v\n", o.owner, err)
		return nil
	}
	if !gone {
		fmt.Fprintf(stdout, "stopping; daemonset %s still exists (update or restart), the files stay\n", o.owner)
		return nil
	}
	for _, r := range o.registries {
		if err := removeHostsDir(o.dir, r); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "daemonset %s is gone: removed the files for %s\n", o.owner, strings.Join(o.registries, ", "))
	return nil
}

// retirePoll is how often retireDaemonSet asks whether the DaemonSet is gone.
const retirePoll = 2 * time.Second

// parseRetire checks a --retire command line: the DaemonSet's name and nothing else.
func (o *nodeconfigOptions) parseRetire(nargs int) error {
	if ns, name, ok := strings.Cut(o.retire, "/"); !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return fmt.Errorf("--retire %q: want NAMESPACE/NAME", o.retire)
	}
	if o.dir != "" || o.remove || o.wait || o.owner != "" || nargs != 0 {
		return errors.New("--retire takes no --dir, --remove, --wait, --owner or REGISTRY")
	}
	if o.retireTimeout <= 0 {
		return fmt.Errorf("--retire-timeout %s: must be positive", o.retireTimeout)
	}
	return nil
}

// retireDaemonSet deletes the DaemonSet with foreground propagation, so the API keeps it (being deleted) until
// its pods are gone, and waits for that: each pod's nodeconfig sees the DaemonSet being deleted at SIGTERM and
// removes its node's files. Run before the chart's RBAC and ServiceAccount are deleted (a pre-delete hook), the
// pods can still ask; without it helm deletes them in the same breath as the DaemonSet, the pods' question fails
// and the files stay. An error means the wait did not end (the files may stay on some nodes).
func (o *nodeconfigOptions) retireDaemonSet(ctx context.Context, kc *kubeClient, stdout io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, o.retireTimeout)
	defer cancel()
	ns, name, _ := strings.Cut(o.retire, "/")
	path := "/apis/apps/v1/namespaces/" + url.PathEscape(ns) + "/daemonsets/" + url.PathEscape(name)
	opts := map[string]string{"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Foreground"}
	code, err := kc.do(ctx, http.MethodDelete, path, opts, nil)
	if err != nil {
		return fmt.Errorf("nodeconfig --retire: %w", err)
	}
	if code == http.StatusNotFound {
		fmt.Fprintf(stdout, "daemonset %s is already gone\n", o.retire)
		return nil
	}
	fmt.Fprintf(stdout, "deleting daemonset %s; waiting for its pods to remove the node files\n", o.retire)
	t := time.NewTicker(retirePoll)
	defer t.Stop()
	for {
		code, err := kc.do(ctx, http.MethodGet, path, nil, nil)
		if err == nil && code == http.StatusNotFound {
			fmt.Fprintf(stdout, "daemonset %s is gone\n", o.retire)
			return nil
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = errors.New("its pods are still running")
			}
			return fmt.Errorf("nodeconfig --retire: daemonset %s not gone after %s: %w", o.retire, o.retireTimeout, err)
		case <-t.C:
		}
	}
}
