/* The item source of the aggregated report (input.h): events of all threads merged by time
 * (order.c), so a free on one thread meets the allocation another thread made before it. */
#include "input.h"

#include <stdlib.h>
#include <string.h>

#include "order.h"
#include "util.h"

struct input {
    struct order *o;
    const char *name; /* as reader_name() says it */
};

static int wrap(struct input **out, struct order *o, int rc, const char *name)
{
    if (o == NULL) {
        *out = NULL;
        return rc;
    }
    struct input *in = malloc(sizeof *in);
    if (in == NULL) {
        order_close(o);
        *out = NULL;
        return RD_ERR_NOMEM;
    }
    in->o = o;
    in->name = name;
    *out = in;
    return rc;
}

int input_open(struct input **out, const char *path)
{
    struct order *o = NULL;
    int rc = order_open(&o, path);
    return wrap(out, o, rc, strcmp(path, "-") == 0 ? "<stdin>" : path);
}

int input_open_mem(struct input **out, const void *data, size_t size)
{
    struct order *o = NULL;
    int rc = order_open_mem(&o, data, size);
    return wrap(out, o, rc, "<memory>");
}

int input_next(struct input *in, struct rd_item *item)
{
    return order_next(in->o, item);
}

const struct rd_status *input_status(const struct input *in)
{
    return order_status(in->o);
}

const char *input_error(const struct input *in)
{
    return order_error(in->o);
}

const char *input_name(const struct input *in)
{
    return in->name;
}

void input_close(struct input *in)
{
    if (in == NULL)
        return;
    order_close(in->o);
    free(in);
}
