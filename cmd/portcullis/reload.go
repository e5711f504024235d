package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/portcullis/portcullis/admin"
)

// watchSIGHUP reloads the policy file on every SIGHUP until ctx ends, as the admin API's POST
// /admin/v1/policy/reload does (announced to the other replicas, audited as actor "SIGHUP"); an invalid file is
// logged as an error and counted (portcullis_policy_reloads_total{result="error"}), and the running policy stays.
// The signal is caught from the moment watchSIGHUP returns, so a SIGHUP never stops the process, with or without a
// policy.
func (a *app) watchSIGHUP(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if a.policyFile == nil {
					a.log.Warn("SIGHUP: no policy is configured, so there is nothing to reload")
					continue
				}
				_, _ = a.policyFile.Reload(ctx, "SIGHUP", "") // logged, counted and audited by Reload
			}
		}
	}()
}

// policyAdminOptions are the admin API's explain, decisions and policy routes, when a policy is in force: on the
// gate, the policy file and the upstream clients.
func (a *app) policyAdminOptions() []admin.Option {
	if a.gate == nil || a.policyFile == nil {
		return nil
	}
	r := imageResolver{cfg: a.cfg, clients: a.clients}
	return []admin.Option{admin.WithExplain(a.gate, r), admin.WithDecisions(a.gate, r), admin.WithPolicy(a.policyFile, a.gate, r)}
}
