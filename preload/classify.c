/* Classification by MEMTRACE_RULES (see classify.h). The rules are parsed with the
 * configuration (mt_config.rule_set); the lib= and func= verdicts for a stack are computed once
 * per distinct stack and kept on its node (mt_stack_aux), so symbols are looked up once. */
#include "classify.h"

#include "config.h"
#include "guard.h"
#include "rules.h"
#include "stack.h"
#include "tbuf.h"

int mt_classify_active;
static int needs_stack;

void mt_classify_init(void)
{
    needs_stack = mt_rules_needs_stack(&mt_config.rule_set);
    mt_classify_active = mt_config.rule_set.n > 0;
}

/* The stack part of every rule for this node, evaluated on first use. */
static void stackinfo(struct mt_stack_node *node, struct mt_rules_stackinfo *si)
{
    uint32_t v;
    if (mt_stack_aux_get(node, &v)) {
        si->match = v;
        return;
    }
    uint32_t saved = mt_tls.in;
    mt_guard_set(MT_IN_SHIM); /* the symbol lookup maps ELF files: its calls are ours */
    mt_rules_stack_eval(&mt_config.rule_set, mt_stack_frames(node), mt_stack_nframes(node), si);
    mt_guard_set(saved);
    mt_stack_aux_set(node, si->match);
}

uint32_t mt_classify_slow(unsigned kind, uint64_t size, uint32_t default_cls,
                          struct mt_stack_node **node)
{
    struct mt_rules_stackinfo si, *sip = NULL;
    if (needs_stack) {
        if (*node == MT_TBUF_CAPTURE)
            *node = mt_tbuf_capture(); /* the event reuses it: same frames */
        if (*node != NULL) {
            stackinfo(*node, &si);
            sip = &si;
        }
    }
    return mt_rules_classify(&mt_config.rule_set, kind, size, default_cls, sip);
}
