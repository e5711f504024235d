package rego

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	oparego "github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"

	"github.com/portcullis/portcullis/policy"
)

// DefaultTimeout bounds one module's evaluation when WithTimeout does not say.
const DefaultTimeout = 100 * time.Millisecond

// inputSchemaJSON is the JSON schema of policy.Input that modules are type-checked against.
//
//go:embed input.schema.json
var inputSchemaJSON []byte

// disabled lists the builtins a module may not call: they do I/O (http.send, net.lookup_ip_addr), read the
// runtime's environment (opa.runtime) or the clock (time.now_ns), or draw random numbers, and a decision must be a
// function of the facts. A name ending in "." stands for every builtin under it.
var disabled = []string{"http.send", "net.", "opa.runtime", "time.now_ns", "rand.intn", "uuid.rfc4122"}

func isDisabled(name string) bool {
	return slices.ContainsFunc(disabled, func(d string) bool {
		return name == d || strings.HasSuffix(d, ".") && strings.HasPrefix(name, d)
	})
}

// Engine compiles and evaluates rules' Rego modules. It is safe for concurrent use.
type Engine struct {
	timeout time.Duration
	caps    *ast.Capabilities
	schemas *ast.SchemaSet
}

var _ policy.ModuleCompiler = (*Engine)(nil)

// Option configures an Engine.
type Option func(*Engine) error

// WithTimeout bounds one module's evaluation; an overrun is an error, which the rule's onError decides. Default
// 100ms.
func WithTimeout(d time.Duration) Option {
	return func(e *Engine) error {
		if d <= 0 {
			return errors.New("rego: the evaluation timeout must be positive")
		}
		e.timeout = d
		return nil
	}
}

// New returns an Engine.
func New(opts ...Option) (*Engine, error) {
	e := &Engine{timeout: DefaultTimeout, caps: capabilities()}
	for _, o := range opts {
		if err := o(e); err != nil {
			return nil, err
		}
	}
	var schema any
	if err := json.Unmarshal(inputSchemaJSON, &schema); err != nil {
		return nil, fmt.Errorf("rego: input schema: %w", err)
	}
	e.schemas = ast.NewSchemaSet()
	e.schemas.Put(ast.SchemaRootRef, schema)
	return e, nil
}

// capabilities are this OPA's, less the disabled builtins, with no host allowed for network access.
func capabilities() *ast.Capabilities {
	c := ast.CapabilitiesForThisVersion(ast.CapabilitiesRegoVersion(ast.RegoV1))
	c.Builtins = slices.DeleteFunc(c.Builtins, func(b *ast.Builtin) bool { return isDisabled(b.Name) })
	c.AllowNet = []string{}
	return c
}

// Timeout is the bound on one evaluation.
func (e *Engine) Timeout() time.Duration { return e.timeout }

// CompileModule parses and compiles m as Rego v1, type-checked against the input schema, and prepares its
// `deny` query. Problems are *policy.ModuleError values at the module's lines.
func (e *Engine) CompileModule(m policy.Module) (policy.ModuleEvaluator, error) {
	mod, err := ast.ParseModuleWithOpts(m.File, m.Source, ast.ParserOptions{RegoVersion: ast.RegoV1})
	if err != nil {
		return nil, moduleErrors(err)
	}
	if err := checkDeny(mod); err != nil {
		return nil, err
	}
	c := ast.NewCompiler().
		WithCapabilities(e.caps).
		WithSchemas(e.schemas).
		WithUseTypeCheckAnnotations(true).
		WithEnablePrintStatements(false).
		WithDefaultRegoVersion(ast.RegoV1)
	if c.Compile(map[string]*ast.Module{m.File: mod}); c.Failed() {
		return nil, moduleErrors(c.Errors)
	}
	query := ast.NewBody(ast.NewExpr(ast.NewTerm(mod.Package.Path.Append(ast.StringTerm("deny")))))
	pq, err := oparego.New(
		oparego.ParsedQuery(query),
		oparego.Compiler(c),
		oparego.Capabilities(e.caps),
		oparego.SetRegoVersion(ast.RegoV1),
		oparego.EnablePrintStatements(false),
	).PrepareForEval(context.Background())
	if err != nil {
		return nil, moduleErrors(err)
	}
	return &module{query: pq, timeout: e.timeout}, nil
}

// checkDeny requires a `deny` rule that is a set of messages: the one shape the gate reads. `deny if {...}` (a
// boolean) and `deny[msg] if {...}` (in Rego v1 an object) are refused with what to write instead.
func checkDeny(mod *ast.Module) error {
	var found bool
	var errs []error
	for _, r := range mod.Rules {
		ref := r.Head.Ref()
		if len(ref) == 0 || !ref[0].Equal(ast.VarTerm("deny")) {
			continue
		}
		found = true
		if len(ref) > 1 || r.Head.RuleKind() != ast.MultiValue {
			errs = append(errs, &policy.ModuleError{Line: r.Location.Row,
				Msg: "deny must be a set of messages: write `deny contains msg if { ... }`"})
		}
	}
	if !found {
		return &policy.ModuleError{Line: mod.Package.Location.Row,
			Msg: fmt.Sprintf("package %s defines no deny rule: write `deny contains msg if { ... }`", strings.TrimPrefix(mod.Package.Path.String(), "data."))}
	}
	return errors.Join(errs...)
}

// undefinedFunction finds the name in OPA's "undefined function NAME".
var undefinedFunction = regexp.MustCompile(`undefined function ([A-Za-z0-9_.]+)`)

// astErrors returns OPA's compile errors in err.
func astErrors(err error) (ast.Errors, bool) {
	var list ast.Errors
	if errors.As(err, &list) {
		return list, true
	}
	var one *ast.Error
	if errors.As(err, &one) {
		return ast.Errors{one}, true
	}
	return nil, false
}

// describe is an OPA error's code and message, without its location, explaining a disabled builtin.
func describe(e *ast.Error) string {
	if m := undefinedFunction.FindStringSubmatch(e.Message); m != nil && isDisabled(m[1]) {
		names := make([]string, len(disabled))
		for i, d := range disabled {
			names[i] = d
			if strings.HasSuffix(d, ".") {
				names[i] = d + "*"
			}
		}
		return fmt.Sprintf("%s: %s is not available: Portcullis evaluates modules without I/O, clock or randomness (not available: %s, print)",
			e.Code, m[1], strings.Join(names, ", "))
	}
	return e.Code + ": " + e.Message
}

// moduleErrors turns OPA's errors into *policy.ModuleError values at their rows.
func moduleErrors(err error) error {
	list, ok := astErrors(err)
	if !ok {
		return err
	}
	out := make([]error, 0, len(list))
	for _, e := range list {
		line := 0
		if e.Location != nil {
			line = e.Location.Row
		}
		out = append(out, &policy.ModuleError{Line: line, Msg: describe(e)})
	}
	return errors.Join(out...)
}

// module is a compiled module: its prepared deny query.
type module struct {
	query   oparego.PreparedEvalQuery
	timeout time.Duration
}

// ErrTimeout means an evaluation passed its time bound.
var ErrTimeout = errors.New("evaluation passed its time bound")

// Deny evaluates the module over in, within the time bound, and returns its deny messages, sorted. A message that
// is not a string is given as JSON.
func (m *module) Deny(in *policy.Input) ([]string, error) {
	v, err := inputValue(in)
	if err != nil {
		return nil, fmt.Errorf("input: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), m.timeout)
	defer cancel()
	rs, err := m.query.Eval(ctx, oparego.EvalParsedInput(v))
	if err != nil {
		if topdown.IsCancel(err) || ctx.Err() != nil {
			return nil, fmt.Errorf("%w (%s)", ErrTimeout, m.timeout)
		}
		return nil, err
	}
	var out []string
	for _, r := range rs {
		for _, ex := range r.Expressions {
			set, ok := ex.Value.([]any)
			if !ok {
				return nil, fmt.Errorf("deny is %T, not a set of messages", ex.Value)
			}
			for _, msg := range set {
				s, ok := msg.(string)
				if !ok {
					b, _ := json.Marshal(msg)
					s = string(b)
				}
				out = append(out, s)
			}
		}
	}
	sort.Strings(out)
	return out, nil
}
