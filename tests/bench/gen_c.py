#!/usr/bin/env python3
"""Write a self-contained C file (no #include) for the cc1 benchmark of scripts/bench.sh.

    gen_c.py FUNCS > out.c

Deterministic: the same FUNCS always gives the same file. Each function mixes what a compiler
spends its time on (structs, loops, switches, inlinable helpers, string tables), so cc1 -O2 on
the result builds and frees many trees, RTL and hash tables, like compiling real code.
"""
import sys


def main():
    funcs = int(sys.argv[1]) if len(sys.argv) > 1 else 1200
    out = sys.stdout
    out.write("typedef unsigned long size_t;\n")
    out.write("struct node { struct node *next; long key; double w; char tag[16]; };\n")
    out.write("static inline long mix(long a, long b) { return (a * 31) ^ (b >> 3); }\n")
    for i in range(funcs):
        k = i % 7
        out.write(f"""
struct s{i} {{ long a{i}; int b[{4 + k}]; double c; struct node *n; }};
static const char *const names{i}[] = {{ "alpha{i}", "beta{i}", "gamma{i}", "delta{i}" }};
__attribute__((noinline)) long f{i}(struct s{i} *s, struct node *list, int n)
{{
    long acc = {i};
    for (int j = 0; j < n; j++) {{
        switch ((j + {k}) % 6) {{
        case 0: acc += mix(s->a{i}, j); break;
        case 1: acc ^= s->b[j % {4 + k}] * {i + 3}; break;
        case 2: acc -= (long)(s->c * j); break;
        case 3: acc += names{i}[j & 3][j % 5]; break;
        case 4: for (struct node *p = list; p; p = p->next) acc += p->key * {k + 1}; break;
        default: acc = mix(acc, {i} + j); break;
        }}
        if (acc > {1000 + i} && s->n) {{
            s->n->w += acc / {k + 2}.0;
            s->n->tag[j & 15] = (char)acc;
        }}
    }}
    s->a{i} = acc;
    return acc;
}}
""")
    out.write("long total(void *v, struct node *l, int n)\n{\n    long t = 0;\n")
    for i in range(funcs):
        out.write(f"    t += f{i}((struct s{i} *)v, l, n);\n")
    out.write("    return t;\n}\n")


if __name__ == "__main__":
    main()
