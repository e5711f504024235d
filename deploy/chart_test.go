package deploy_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/internal/gotool"
	"github.com/portcullis/portcullis/policy"
)

const (
	chartDir    = "helm/portcullis"
	kubeVersion = "1.31.0"
	namespace   = "portcullis"
	release     = "pc"
	// buildTimeout covers a cold build of the Helm CLI (about 8 CPU-minutes: 374s user, 126s sys, 1.1 GB RSS);
	// `make tools` builds it first.
	buildTimeout = 25 * time.Minute
)

var helmOnce struct {
	sync.Once
	path string
	err  error
}

// helmBinary builds (once, through the build cache) the Helm CLI pinned in tools/helm and returns its path.
func helmBinary(t *testing.T) string {
	t.Helper()
	helmOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
		defer cancel()
		helmOnce.path, helmOnce.err = gotool.Path(ctx, "tools/helm", "helm")
	})
	if helmOnce.err != nil {
		t.Fatal(helmOnce.err)
	}
	return helmOnce.path
}

func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, helmBinary(t), args...)
	home := t.TempDir() // no user config, no repositories, no cache
	cmd.Env = []string{"HOME=" + home, "HELM_CACHE_HOME=" + home, "HELM_CONFIG_HOME=" + home, "HELM_DATA_HOME=" + home, "PATH=" + os.Getenv("PATH")}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String() + stderr.String(), fmt.Errorf("helm %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// valuesFiles are the chart's test cases: "" for the default values, then one file per option.
func valuesFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(chartDir, "ci", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no values files in %s/ci: %v", chartDir, err)
	}
	sort.Strings(files)
	return append([]string{""}, files...)
}

func renderArgs(values string, set ...string) []string {
	args := []string{"template", release, chartDir, "--namespace", namespace, "--kube-version", kubeVersion}
	if values != "" {
		args = append(args, "--values", values)
	}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	return args
}

// TestChartRendersStrictly: for the default values and each ci/ values file, helm lint passes and every object
// helm template renders decodes strictly into its API type; then the rendered pods are checked for what the chart
// promises (probes, security context, drain) and the rendered config and policy for what Portcullis accepts.
func TestChartRendersStrictly(t *testing.T) {
	for _, values := range valuesFiles(t) {
		name := "default values"
		if values != "" {
			name = filepath.Base(values)
		}
		t.Run(name, func(t *testing.T) {
			lint := []string{"lint", "--strict", chartDir, "--namespace", namespace, "--kube-version", kubeVersion}
			if values != "" {
				lint = append(lint, "--values", values)
			}
			if out, err := helm(t, lint...); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			out, err := helm(t, renderArgs(values)...)
			if err != nil {
				t.Fatal(err)
			}
			objs, err := decodeAll(out)
			if err != nil {
				t.Fatal(err)
			}
			checkObjects(t, objs)
		})
	}
}

func find[T any](objs []object, name string) (T, bool) {
	for _, o := range objs {
		if v, ok := o.typed.(T); ok && (name == "" || o.name == name) {
			return v, true
		}
	}
	var zero T
	return zero, false
}

// checkObjects checks what the chart promises of the objects of one rendering.
func checkObjects(t *testing.T, objs []object) {
	t.Helper()
	full := release + "-portcullis"
	dep, ok := find[*appsv1.Deployment](objs, full)
	if !ok {
		t.Fatalf("no Deployment %s", full)
	}
	spec := dep.Spec.Template.Spec
	if *dep.Spec.Replicas > 1 {
		if _, ok := find[*policyv1.PodDisruptionBudget](objs, full); !ok {
			t.Errorf("%d replicas without a PodDisruptionBudget", *dep.Spec.Replicas)
		}
	}
	psc := spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod security context: %+v", psc)
	}
	c := spec.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
		t.Errorf("container security context: %+v", sc)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
		t.Errorf("no resource requests: %+v", c.Resources)
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.ReadinessProbe.HTTPGet.Port.String() != "ops" ||
		c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" || c.LivenessProbe.HTTPGet.Port.String() != "ops" {
		t.Errorf("probes: readiness %+v liveness %+v", c.ReadinessProbe, c.LivenessProbe)
	}
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil {
		t.Errorf("no preStop drain: %+v", c.Lifecycle)
	}
	if _, ok := find[*corev1.Service](objs, full); !ok {
		t.Errorf("no Service %s", full)
	}
	checkConfig(t, objs, dep)
	if ds, ok := find[*appsv1.DaemonSet](objs, full+"-node"); ok {
		checkDaemonSet(t, ds)
		checkUninstallHook(t, objs, ds)
	}
	if pr, ok := find[*prometheusRule](objs, ""); ok {
		checkAlerts(t, pr)
	}
}

// checkConfig writes what the Deployment mounts from rendered ConfigMaps and Secrets into a directory, points
// the rendered config there, and loads it as `portcullis serve` would (Parse, environment, Validate, and when
// every mounted file was rendered, CheckFiles and the policy with its keys).
func checkConfig(t *testing.T, objs []object, dep *appsv1.Deployment) {
	t.Helper()
	root := t.TempDir()
	spec := dep.Spec.Template.Spec
	volumes := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = v
	}
	complete := true
	for _, m := range spec.Containers[0].VolumeMounts {
		v := volumes[m.Name]
		var data map[string][]byte
		switch {
		case v.ConfigMap != nil:
			cm, ok := find[*corev1.ConfigMap](objs, v.ConfigMap.Name)
			if !ok {
				complete = false // the user's own, from extraVolumes
				continue
			}
			data = map[string][]byte{}
			for k, s := range cm.Data {
				data[k] = []byte(s)
			}
		case v.Secret != nil:
			s, ok := find[*corev1.Secret](objs, v.Secret.SecretName)
			if !ok {
				complete = false // the user's own Secret
				continue
			}
			data = s.Data
		default:
			continue
		}
		for k, b := range data {
			p := filepath.Join(root, m.MountPath, k)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	cfgPath := filepath.Join(root, "etc/portcullis/config/portcullis.yaml")
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatalf("the Deployment does not mount the config: %v", err)
	}
	if args := spec.Containers[0].Args; strings.Join(args, " ") != "serve --config /etc/portcullis/config/portcullis.yaml" {
		t.Errorf("args %q", args)
	}
	doc := strings.ReplaceAll(string(raw), "/etc/portcullis/", root+"/etc/portcullis/")
	doc = strings.ReplaceAll(doc, "/var/lib/portcullis", filepath.Join(root, "data"))
	cfg, err := configs.Parse([]byte(doc), "portcullis.yaml")
	if err != nil {
		t.Fatalf("rendered config: %v\n%s", err, raw)
	}
	env := map[string]string{}
	for _, e := range spec.Containers[0].Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			if s, ok := find[*corev1.Secret](objs, e.ValueFrom.SecretKeyRef.Name); ok {
				if _, has := s.Data[e.ValueFrom.SecretKeyRef.Key]; !has {
					t.Errorf("env %s: Secret %s has no key %s", e.Name, s.Name, e.ValueFrom.SecretKeyRef.Key)
				}
				env[e.Name] = string(s.Data[e.ValueFrom.SecretKeyRef.Key])
			} else {
				env[e.Name] = "from-your-secret"
			}
		}
	}
	cfg.ApplyEnv(func(k string) string { return env[k] })
	if err := cfg.Validate(); err != nil {
		t.Fatalf("rendered config does not validate: %v\n%s", err, raw)
	}
	if !complete {
		return
	}
	for _, u := range cfg.Upstreams {
		if u.CAFile != "" {
			return // from extraVolumes the chart does not render
		}
	}
	if err := cfg.CheckFiles(); err != nil {
		t.Errorf("rendered config names files the pod does not have: %v", err)
	}
	if cfg.Policy != "" {
		b, err := os.ReadFile(cfg.Policy)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := policy.Parse(b, cfg.Policy, func(name string) ([]byte, error) {
			if strings.HasPrefix(name, "/etc/portcullis/") {
				name = filepath.Join(root, name)
			}
			return os.ReadFile(name)
		}); err != nil {
			t.Errorf("rendered policy: %v", err)
		}
	}
	if cfg.Cache.Redis.Enabled() {
		key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cfg.Cache.StateKey))
		if cfg.Cache.StateKey == "" {
			b, _ := os.ReadFile(cfg.Cache.StateKeyFile)
			key, err = base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
		}
		if err != nil || len(key) < 32 {
			t.Errorf("state key: %d bytes, %v", len(key), err)
		}
	}
}

// checkDaemonSet: the node DaemonSet writes and checks the same Portcullis URL for the same registries, with the
// host's config path mounted where the commands look.
func checkDaemonSet(t *testing.T, ds *appsv1.DaemonSet) {
	t.Helper()
	byName := map[string]corev1.Container{}
	for _, c := range ds.Spec.Template.Spec.Containers {
		byName[c.Name] = c
	}
	nc, ck := byName["nodeconfig"], byName["nodecheck"]
	if len(nc.Args) == 0 || nc.Args[0] != "nodeconfig" || len(ck.Args) == 0 || ck.Args[0] != "nodecheck" {
		t.Fatalf("containers: %+v", byName)
	}
	for _, want := range []string{"--dir=/host/certs.d", "--portcullis=$(PORTCULLIS_URL)", "--wait"} {
		if !contains(nc.Args, want) {
			t.Errorf("nodeconfig args %q lack %s", nc.Args, want)
		}
	}
	for _, want := range []string{"--containerd=/host/certs.d", "--portcullis=$(PORTCULLIS_URL)", "--node=$(NODE_NAME)"} {
		if !contains(ck.Args, want) {
			t.Errorf("nodecheck args %q lack %s", ck.Args, want)
		}
	}
	url := func(c corev1.Container) string {
		for _, e := range c.Env {
			if e.Name == "PORTCULLIS_URL" {
				return e.Value
			}
		}
		return ""
	}
	if u := url(nc); u == "" || u != url(ck) || !regexp.MustCompile(`^https?://[^/]+:[0-9]+$`).MatchString(u) {
		t.Errorf("PORTCULLIS_URL: nodeconfig %q, nodecheck %q", u, url(ck))
	}
	if !strings.Contains(strings.Join(nc.Args, " "), "_default") {
		t.Errorf("nodeconfig does not write _default: %q", nc.Args)
	}
	var hostPath string
	for _, v := range ds.Spec.Template.Spec.Volumes {
		if v.HostPath != nil {
			hostPath = v.HostPath.Path
		}
	}
	if hostPath == "" {
		t.Error("no hostPath volume for containerd's config_path")
	}
	if sc := ck.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("nodecheck runs as root or writable: %+v", sc)
	}
	if sc := nc.SecurityContext; sc == nil || sc.Capabilities == nil || sc.Capabilities.Drop[0] != "ALL" || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("nodeconfig security context: %+v", sc)
	}
}

// checkUninstallHook: `helm uninstall` runs a pre-delete Job that retires the node DaemonSet (the one its pods
// name as their --owner) with permission to, before helm deletes the pods' RBAC.
func checkUninstallHook(t *testing.T, objs []object, ds *appsv1.DaemonSet) {
	t.Helper()
	job, ok := find[*batchv1.Job](objs, ds.Name+"-remove")
	if !ok {
		t.Errorf("no pre-delete Job %s-remove: helm uninstall would leave the node files", ds.Name)
		return
	}
	if job.Annotations["helm.sh/hook"] != "pre-delete" {
		t.Errorf("Job %s annotations %v: not a pre-delete hook", job.Name, job.Annotations)
	}
	target := namespace + "/" + ds.Name
	if args := job.Spec.Template.Spec.Containers[0].Args; len(args) < 2 || args[0] != "nodeconfig" || !contains(args, "--retire="+target) {
		t.Errorf("Job args %q: want nodeconfig --retire=%s", args, target)
	}
	for _, c := range ds.Spec.Template.Spec.Containers {
		if c.Name == "nodeconfig" && !contains(c.Args, "--owner="+target) {
			t.Errorf("nodeconfig args %q: its --owner is not what the hook retires (%s)", c.Args, target)
		}
	}
	sa := job.Spec.Template.Spec.ServiceAccountName
	allowed := map[string]bool{}
	for _, o := range objs {
		rb, ok := o.typed.(*rbacv1.RoleBinding)
		if !ok || len(rb.Subjects) != 1 || rb.Subjects[0].Name != sa || rb.Annotations["helm.sh/hook"] != "pre-delete" {
			continue
		}
		role, ok := find[*rbacv1.Role](objs, rb.RoleRef.Name)
		if !ok || role.Annotations["helm.sh/hook"] != "pre-delete" {
			t.Errorf("RoleBinding %s: Role %s missing or not a hook (helm would delete it with the release)", rb.Name, rb.RoleRef.Name)
			continue
		}
		for _, r := range role.Rules {
			if contains(r.Resources, "daemonsets") && contains(r.ResourceNames, ds.Name) {
				for _, v := range r.Verbs {
					allowed[v] = true
				}
			}
		}
	}
	if !allowed["delete"] || !allowed["get"] {
		t.Errorf("the hook's service account %s may %v on daemonset %s, want get and delete", sa, allowed, ds.Name)
	}
}

// checkAlerts: every alert's expression names only metrics that Portcullis or nodecheck export (documented in
// docs/operations.md) or Prometheus' own up.
func checkAlerts(t *testing.T, pr *prometheusRule) {
	t.Helper()
	ops, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			n++
			for _, m := range regexp.MustCompile(`portcullis_[a-z_]+`).FindAllString(r.Expr, -1) {
				if !bytes.Contains(ops, []byte("`"+m+"`")) {
					t.Errorf("alert %s: metric %s is not in docs/operations.md", r.Alert, m)
				}
			}
		}
	}
	// The other way round: each metric the "Suggested alerts" paragraph names has an alert.
	_, suggested, _ := bytes.Cut(ops, []byte("Suggested alerts"))
	suggested, _, _ = bytes.Cut(suggested, []byte("\n\n"))
	var exprs strings.Builder
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			exprs.WriteString(r.Expr + "\n")
		}
	}
	for _, m := range regexp.MustCompile(`portcullis_[a-z_]+`).FindAllString(string(suggested), -1) {
		if !strings.Contains(exprs.String(), m) {
			t.Errorf("docs/operations.md suggests an alert on %s; the PrometheusRule has none", m)
		}
	}
	if n < 6 {
		t.Errorf("%d alerts, want the ones docs/operations.md recommends", n)
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

// TestChartRejectsMistakes: the schema refuses a misspelt or mistyped value, and the templates refuse settings
// that cannot work, each with a message that names the setting.
func TestChartRejectsMistakes(t *testing.T) {
	tests := []struct {
		name string
		set  []string
		want string
	}{
		{"misspelt top-level field", []string{"replicaCout=3"}, "replicaCout"},
		{"misspelt nested field", []string{"nodeConfig.enabeld=true"}, "enabeld"},
		{"misspelt uninstall switch", []string{"nodeConfig.removeOnUninstal=false"}, "removeOnUninstal"},
		{"uninstall timeout without a unit", []string{"nodeConfig.removeTimeout=300"}, "removeTimeout"},
		{"wrong type", []string{"replicaCount=two"}, "replicaCount"},
		{"registry that is a path", []string{"nodeConfig.registries={docker.io/library}"}, "registries"},
		{"bad log level", []string{"log.level=verbose"}, "/log/level"},
		{"two replicas without shared state", []string{"redis.bundled.enabled=false"}, "replicaCount > 1 needs shared state"},
		{"node registry Portcullis does not serve", []string{"nodeConfig.enabled=true", "nodeConfig.registries={docker.io,registry.other.io}"}, "registry.other.io, which is not in upstreams"},
		{"TLS without a certificate", []string{"tls.enabled=true"}, "tls.secretName or tls.certManager.enabled"},
		{"no policy", []string{"policy.document="}, "policy.document is empty"},
		{"short admin token", []string{"admin.enabled=true", "admin.tokens[0].name=a", "admin.tokens[0].role=write", "admin.tokens[0].token=short"}, "token"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := helm(t, renderArgs("", tc.set...)...)
			if err == nil {
				t.Fatalf("rendered:\n%.400s", out)
			}
			if !strings.Contains(out, tc.want) {
				t.Errorf("error does not name %q:\n%s", tc.want, out)
			}
		})
	}
}
