// Command portcullis is an OCI registry pull-through proxy that serves only images it can trust.
//
// Usage:
//
//	portcullis serve [--config FILE] [--listen ADDR] [--upstream NAME=URL]... [--data-dir DIR]
//	portcullis validate [--config FILE | FILE] [--policy FILE]
//	portcullis check [--config FILE] [--policy FILE] [--upstream NAME=URL]... IMAGE
//	portcullis policy test [-v] [--run REGEX] DIR|FILE...
//	portcullis demo
//	portcullis admin deny|allow add|rm|ls, admin audit, admin report, admin vex, admin explain IMAGE, admin policy preview FILE
//	portcullis nodeconfig --dir DIR --portcullis URL [--ca FILE] REGISTRY...
//	portcullis nodecheck --portcullis URL [--containerd DIR] [--docker daemon.json] [--registries registries.conf]
//	portcullis version
//	portcullis help
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `portcullis: an OCI registry pull-through proxy that serves only images it can trust

Usage:
  portcullis serve [flags]        run the proxy (see 'portcullis serve -h')
  portcullis validate [flags]     check a config file (and its policy) without serving
  portcullis check [flags] IMAGE  run admission for IMAGE against the upstreams; print the decision and evidence
  portcullis policy test DIR      run the Rego unit tests (test_ rules) beside a policy's modules, as opa test does
  portcullis demo                 the whole story offline: a signed and an unsigned image through a policy
  portcullis admin VERB ...       deny/allow lists, audit log, explain, policy preview via the admin API (see 'portcullis admin help')
  portcullis nodeconfig [flags] REGISTRY...  write a node's containerd hosts.toml files that pull only through Portcullis
  portcullis nodecheck [flags]    name every registry whose pulls can go around Portcullis on this node
  portcullis version              print the version

Quick start, no config file, no other service:
  portcullis serve --listen 127.0.0.1:5000 --upstream docker.io=https://registry-1.docker.io --data-dir ./data
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run executes one command and returns the process exit code: 0 success, 1 a negative answer or a failure,
// 2 a usage error.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = serve(ctx, args[1:], stderr)
	case "demo":
		err = demo(ctx, args[1:], stdout, stderr)
	case "check":
		err = check(ctx, args[1:], stdout, stderr)
	case "validate":
		err = validate(args[1:], stdout, stderr)
	case "policy":
		err = policyCmd(ctx, args[1:], stdout, stderr)
	case "admin":
		err = adminCmd(ctx, args[1:], stdout, stderr)
	case "nodeconfig":
		err = nodeconfig(ctx, args[1:], stdout, stderr)
	case "nodecheck":
		err = nodecheck(ctx, args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "portcullis", version)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "portcullis: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errDenied):
		return 1
	case errors.As(err, &ue):
		if !ue.printed {
			fmt.Fprintln(stderr, "portcullis:", err)
		}
		return 2
	default:
		fmt.Fprintln(stderr, "portcullis:", err)
		return 1
	}
}

// usageError is a bad command line; printed says the flag package already told the user.
type usageError struct {
	msg     string
	printed bool
}

func (e usageError) Error() string { return e.msg }
