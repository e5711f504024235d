package main

import (
	"context"
	"fmt"
	"io"
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
