/* vl-torch-ckpt.c: a PyTorch zip checkpoint's state dict, read without running its pickle.
 *
 * torch.save writes a zip archive (libzip reads it): NAME/data.pkl, a pickle (protocol 2) that
 * rebuilds the dict, and NAME/data/KEY, the raw little-endian bytes of each storage. The pickle
 * names every storage by a persistent id ("storage", torch.FloatStorage, KEY, location, numel)
 * and every tensor by torch._utils._rebuild_tensor_v2 (storage, offset, size, stride, …). The
 * machine below interprets the opcodes a pickle can hold, but only builds dicts, lists, tuples,
 * scalars, strings, storages and tensors; any other global it meets is an opaque value that is
 * never imported or called (torch.load (weights_only=True) is as strict; a training checkpoint
 * with argparse.Namespace or numpy scalars beside its state dict still loads here). */
#include "vl-torch-ckpt.h"

#include "vl-error.h"
#include "vl-zip.h"

#include <limits.h>
#include <string.h>

#define PICKLE_MAX ((guint64) 64 << 20)   /* a state dict's pickle is kilobytes to a few MB */

typedef enum {
  PV_MARK, PV_NONE, PV_BOOL, PV_INT, PV_FLOAT, PV_STR, PV_TUPLE, PV_LIST, PV_DICT, PV_GLOBAL,
  PV_STORAGE, PV_TENSOR, PV_OPAQUE,
} PvKind;

typedef struct Pv Pv;
struct Pv {
  PvKind     kind;
  gint64     i;          /* INT, BOOL; TENSOR: storage offset; STORAGE: numel */
  char      *s;          /* STR; GLOBAL: "module.name"; STORAGE: its key */
  GPtrArray *items;      /* TUPLE, LIST: values; DICT: key, value, key, value, … */
  VlDtype    dtype;      /* STORAGE */
  const char *type;      /* STORAGE: torch.FloatStorage, … */
  Pv        *storage;    /* TENSOR */
  int        ndim;
  int64_t    shape[VL_MAX_DIMS];
  int64_t    stride[VL_MAX_DIMS];
};

typedef struct {
  const char   *path;
  const guint8 *start, *p, *end;
  GPtrArray    *all;     /* every value, freed together */
  GPtrArray    *stack;
  GHashTable   *memo;    /* id -> Pv */
  GError      **error;
} Machine;

static const struct {
  const char *name;
  VlDtype     dtype;
} storage_types[] = {
  { "torch.FloatStorage", VL_DTYPE_F32 },     { "torch.HalfStorage", VL_DTYPE_F16 },
  { "torch.BFloat16Storage", VL_DTYPE_BF16 }, { "torch.DoubleStorage", VL_DTYPE_F64 },
  { "torch.LongStorage", VL_DTYPE_I64 },      { "torch.IntStorage", VL_DTYPE_I32 },
  { "torch.ShortStorage", VL_DTYPE_I16 },     { "torch.CharStorage", VL_DTYPE_I8 },
  { "torch.ByteStorage", VL_DTYPE_U8 },       { "torch.BoolStorage", VL_DTYPE_BOOL },
};

/* torch.save's legacy stream opens with the pickle of its magic number 0x1950a86a20f9469cfc6c */
static const guint8 legacy_magic[] = { 0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9,
                                       0x20, 0x6a, 0xa8, 0x50, 0x19 };

gboolean
vl_torch_ckpt_is_legacy (const guint8 *map, size_t size)
{
  return size >= sizeof legacy_magic && memcmp (map, legacy_magic, sizeof legacy_magic) == 0;
}

static void
pv_free (gpointer data)
{
  Pv *v = data;
  g_free (v->s);
  if (v->items)
    g_ptr_array_unref (v->items);
  g_free (v);
}

static Pv *
pv_new (Machine *m, PvKind kind)
{
  Pv *v = g_new0 (Pv, 1);
  v->kind = kind;
  g_ptr_array_add (m->all, v);
  return v;
}

static gboolean G_GNUC_PRINTF (2, 3)
fail (Machine *m, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (m->error, VL_ERROR, VL_ERROR_FORMAT, "%s: its pickle (data.pkl), byte %td: %s",
               m->path, m->p - m->start, msg);
  return FALSE;
}

static gboolean
need (Machine *m, guint64 n)
{
  if (n > (guint64) (m->end - m->p))
    return fail (m, "ends inside an opcode's argument (truncated)");
  return TRUE;
}

static guint64
read_le (Machine *m, int n)
{
  guint64 x = 0;
  for (int k = 0; k < n; k++)
    x |= (guint64) m->p[k] << (8 * k);
  m->p += n;
  return x;
}

/* A text argument up to the newline (the protocol 0 opcodes), or NULL. */
static char *
read_line (Machine *m)
{
  const guint8 *nl = memchr (m->p, '\n', (size_t) (m->end - m->p));
  if (nl == NULL)
    {
      fail (m, "a text argument without its newline (truncated)");
      return NULL;
    }
  char *s = g_strndup ((const char *) m->p, (gsize) (nl - m->p));
  m->p = nl + 1;
  return s;
}

static void
push (Machine *m, Pv *v)
{
  g_ptr_array_add (m->stack, v);
}

static Pv *
pop (Machine *m)
{
  if (m->stack->len == 0 || ((Pv *) m->stack->pdata[m->stack->len - 1])->kind == PV_MARK)
    {
      fail (m, "pops an empty stack");
      return NULL;
    }
  return g_ptr_array_steal_index (m->stack, m->stack->len - 1);
}

static Pv *
top (Machine *m)
{
  if (m->stack->len == 0)
    {
      fail (m, "reads an empty stack");
      return NULL;
    }
  return m->stack->pdata[m->stack->len - 1];
}

/* The values above the last mark, in order (the mark removed), or NULL. */
static GPtrArray *
pop_mark (Machine *m)
{
  guint k = m->stack->len;
  while (k > 0 && ((Pv *) m->stack->pdata[k - 1])->kind != PV_MARK)
    k--;
  if (k == 0)
    {
      fail (m, "no mark to pop to");
      return NULL;
    }
  GPtrArray *items = g_ptr_array_new ();
  for (guint j = k; j < m->stack->len; j++)
    g_ptr_array_add (items, m->stack->pdata[j]);
  g_ptr_array_set_size (m->stack, k - 1);
  return items;
}

static Pv *
new_str (Machine *m, const guint8 *s, guint64 n)
{
  Pv *v = pv_new (m, PV_STR);
  v->s = g_strndup ((const char *) s, (gsize) n);
  return v;
}

static Pv *
new_seq (Machine *m, PvKind kind, GPtrArray *items)
{
  Pv *v = pv_new (m, kind);
  v->items = items ? items : g_ptr_array_new ();
  return v;
}

static gboolean
is_int (const Pv *v)
{
  return v->kind == PV_INT || v->kind == PV_BOOL;
}

/* torch._utils._rebuild_tensor_v2 (storage, storage_offset, size, stride, requires_grad,
 * backward_hooks[, metadata]) */
static Pv *
rebuild_tensor (Machine *m, Pv *args)
{
  if (args->kind != PV_TUPLE || args->items->len < 4)
    {
      fail (m, "_rebuild_tensor with %u arguments, not a storage, an offset, a size and a stride",
            args->items ? args->items->len : 0);
      return NULL;
    }
  Pv *st = args->items->pdata[0], *off = args->items->pdata[1];
  Pv *size = args->items->pdata[2], *stride = args->items->pdata[3];
  if (st->kind != PV_STORAGE || !is_int (off) || size->kind != PV_TUPLE
      || stride->kind != PV_TUPLE || size->items->len != stride->items->len)
    {
      fail (m, "_rebuild_tensor's arguments are not (storage, offset, size, stride) of one rank");
      return NULL;
    }
  if (size->items->len > VL_MAX_DIMS)
    {
      fail (m, "a tensor of %u dimensions (at most %d are read)", size->items->len, VL_MAX_DIMS);
      return NULL;
    }
  Pv *t = pv_new (m, PV_TENSOR);
  t->storage = st;
  t->i = off->i;
  t->ndim = (int) size->items->len;
  for (int d = 0; d < t->ndim; d++)
    {
      Pv *a = size->items->pdata[d], *b = stride->items->pdata[d];
      if (!is_int (a) || !is_int (b) || a->i < 0 || b->i < 0)
        {
          fail (m, "a tensor's size or stride is not a non-negative integer");
          return NULL;
        }
      t->shape[d] = a->i;
      t->stride[d] = b->i;
    }
  if (t->i < 0)
    {
      fail (m, "a tensor's storage offset is negative");
      return NULL;
    }
  return t;
}

static Pv *
reduce (Machine *m, Pv *fn, Pv *args)
{
  if (fn->kind == PV_GLOBAL)
    {
      if (strcmp (fn->s, "collections.OrderedDict") == 0)
        return new_seq (m, PV_DICT, NULL);
      if (strcmp (fn->s, "torch._utils._rebuild_tensor_v2") == 0
          || strcmp (fn->s, "torch._utils._rebuild_tensor") == 0)
        return rebuild_tensor (m, args);
      if ((strcmp (fn->s, "torch._utils._rebuild_parameter") == 0
           || strcmp (fn->s, "torch._utils._rebuild_parameter_with_state") == 0)
          && args->kind == PV_TUPLE && args->items->len >= 1
          && ((Pv *) args->items->pdata[0])->kind == PV_TENSOR)
        return args->items->pdata[0];
    }
  return pv_new (m, PV_OPAQUE);   /* built by nothing: never called */
}

/* ("storage", torch.FloatStorage, key, location, numel) */
static Pv *
persistent_load (Machine *m, Pv *pid)
{
  if (pid->kind != PV_TUPLE || pid->items->len < 5
      || ((Pv *) pid->items->pdata[0])->kind != PV_STR
      || strcmp (((Pv *) pid->items->pdata[0])->s, "storage") != 0)
    {
      fail (m, "a persistent id that is not a storage");
      return NULL;
    }
  Pv *type = pid->items->pdata[1], *key = pid->items->pdata[2], *numel = pid->items->pdata[4];
  if (type->kind != PV_GLOBAL || key->kind != PV_STR || !is_int (numel) || numel->i < 0)
    {
      fail (m, "a storage id that is not (\"storage\", type, key, location, numel)");
      return NULL;
    }
  if (key->s[0] == '\0' || strchr (key->s, '/') || strcmp (key->s, "..") == 0)
    {
      fail (m, "a storage key \"%s\" that is not a name in data/", key->s);
      return NULL;
    }
  Pv *st = pv_new (m, PV_STORAGE);
  for (guint k = 0; k < G_N_ELEMENTS (storage_types); k++)
    if (strcmp (type->s, storage_types[k].name) == 0)
      {
        st->dtype = storage_types[k].dtype;
        st->type = storage_types[k].name;
        st->s = g_strdup (key->s);
        st->i = numel->i;
        return st;
      }
  fail (m, "a storage of type %s (float, half, bfloat16, double and integer storages are read)",
        type->s);
  return NULL;
}

static gboolean
set_items (Machine *m, Pv *target, GPtrArray *items)
{
  if (items->len % 2)
    return fail (m, "SETITEMS with an odd number of values");
  if (target->kind == PV_DICT)
    for (guint k = 0; k < items->len; k++)
      g_ptr_array_add (target->items, items->pdata[k]);
  return TRUE;
}

typedef enum { OP_OK, OP_FAIL, OP_OTHER } OpResult;

#define POP_OR_FAIL(v) Pv *v = pop (m); if (v == NULL) return OP_FAIL

/* Reads an n-byte little-endian length (or id) argument. */
static gboolean
read_arg (Machine *m, int n, guint64 *out)
{
  if (!need (m, (guint64) n))
    return FALSE;
  *out = read_le (m, n);
  return TRUE;
}

/* None, booleans, integers, floats and strings. */
static OpResult
op_scalar (Machine *m, guint8 op)
{
  guint64 x, n;
  switch (op)
    {
    case 'N':
      push (m, pv_new (m, PV_NONE));
      return OP_OK;
    case 0x88: case 0x89:                         /* NEWTRUE, NEWFALSE */
      {
        Pv *v = pv_new (m, PV_BOOL);
        v->i = op == 0x88;
        push (m, v);
        return OP_OK;
      }
    case 'J': case 'K': case 'M':                 /* BININT, BININT1, BININT2 */
      {
        if (!read_arg (m, op == 'J' ? 4 : op == 'K' ? 1 : 2, &x))
          return OP_FAIL;
        Pv *v = pv_new (m, PV_INT);
        v->i = op == 'J' ? (gint64) (gint32) (guint32) x : (gint64) x;
        push (m, v);
        return OP_OK;
      }
    case 0x8a: case 0x8b:                         /* LONG1, LONG4 */
      {
        if (!read_arg (m, op == 0x8a ? 1 : 4, &n))
          return OP_FAIL;
        if (n > 8)
          {
            fail (m, "an integer of %" G_GUINT64_FORMAT " bytes (at most 8 are read)", n);
            return OP_FAIL;
          }
        if (!read_arg (m, (int) n, &x))
          return OP_FAIL;
        if (n > 0 && n < 8 && (x >> (8 * n - 1)) & 1)
          x |= ~(guint64) 0 << (8 * n);           /* sign-extend */
        Pv *v = pv_new (m, PV_INT);
        v->i = (gint64) x;
        push (m, v);
        return OP_OK;
      }
    case 'I': case 'L':                           /* INT, LONG (text) */
      {
        g_autofree char *t = read_line (m);
        if (t == NULL)
          return OP_FAIL;
        Pv *v = pv_new (m, PV_INT);
        if (op == 'I' && (strcmp (t, "00") == 0 || strcmp (t, "01") == 0))
          v->kind = PV_BOOL;
        v->i = g_ascii_strtoll (t, NULL, 10);
        push (m, v);
        return OP_OK;
      }
    case 'G':                                     /* BINFLOAT (its value is never needed) */
      if (!need (m, 8))
        return OP_FAIL;
      m->p += 8;
      push (m, pv_new (m, PV_FLOAT));
      return OP_OK;
    case 'F': case 'S': case 'V':                 /* FLOAT, STRING, UNICODE (text) */
      {
        g_autofree char *t = read_line (m);
        if (t == NULL)
          return OP_FAIL;
        push (m, op == 'F' ? pv_new (m, PV_FLOAT)
                           : new_str (m, (const guint8 *) t, strlen (t)));
        return OP_OK;
      }
    case 'X': case 'T': case 'B':                 /* BINUNICODE, BINSTRING, BINBYTES */
    case 0x8c: case 'U': case 'C':                /* SHORT_BINUNICODE, _BINSTRING, _BINBYTES */
    case 0x8d: case 0x8e: case 0x96:              /* BINUNICODE8, BINBYTES8, BYTEARRAY8 */
      {
        int w = (op == 'X' || op == 'T' || op == 'B') ? 4
                : (op == 0x8c || op == 'U' || op == 'C') ? 1 : 8;
        if (!read_arg (m, w, &n) || !need (m, n))
          return OP_FAIL;
        push (m, new_str (m, m->p, n));
        m->p += n;
        return OP_OK;
      }
    default:
      return OP_OTHER;
    }
}

/* Marks, tuples, lists, dicts, sets and what fills them. */
static OpResult
op_container (Machine *m, guint8 op)
{
  switch (op)
    {
    case '(':
      push (m, pv_new (m, PV_MARK));
      return OP_OK;
    case '0':                                     /* POP */
      {
        POP_OR_FAIL (v);
        (void) v;
        return OP_OK;
      }
    case '2':                                     /* DUP */
      {
        Pv *v = top (m);
        if (v == NULL)
          return OP_FAIL;
        push (m, v);
        return OP_OK;
      }
    case ')':
      push (m, new_seq (m, PV_TUPLE, NULL));
      return OP_OK;
    case ']':
      push (m, new_seq (m, PV_LIST, NULL));
      return OP_OK;
    case '}':
      push (m, new_seq (m, PV_DICT, NULL));
      return OP_OK;
    case 0x8f:                                    /* EMPTY_SET */
      push (m, pv_new (m, PV_OPAQUE));
      return OP_OK;
    case 't': case 'l': case 'd':                 /* TUPLE, LIST, DICT from the mark */
      {
        GPtrArray *items = pop_mark (m);
        if (items == NULL)
          return OP_FAIL;
        if (op == 'd' && items->len % 2)
          {
            g_ptr_array_unref (items);
            fail (m, "DICT with an odd number of values");
            return OP_FAIL;
          }
        push (m, new_seq (m, op == 't' ? PV_TUPLE : op == 'l' ? PV_LIST : PV_DICT, items));
        return OP_OK;
      }
    case 0x85: case 0x86: case 0x87:              /* TUPLE1, TUPLE2, TUPLE3 */
      {
        int n = op - 0x84;
        GPtrArray *items = g_ptr_array_new ();
        g_ptr_array_set_size (items, (guint) n);
        for (int k = n - 1; k >= 0; k--)
          if ((items->pdata[k] = pop (m)) == NULL)
            {
              g_ptr_array_unref (items);
              return OP_FAIL;
            }
        push (m, new_seq (m, PV_TUPLE, items));
        return OP_OK;
      }
    case 'a':                                     /* APPEND */
      {
        POP_OR_FAIL (v);
        Pv *list = top (m);
        if (list == NULL)
          return OP_FAIL;
        if (list->kind == PV_LIST)
          g_ptr_array_add (list->items, v);
        return OP_OK;
      }
    case 's':                                     /* SETITEM */
      {
        POP_OR_FAIL (v);
        POP_OR_FAIL (k);
        Pv *d = top (m);
        if (d == NULL)
          return OP_FAIL;
        if (d->kind == PV_DICT)
          {
            g_ptr_array_add (d->items, k);
            g_ptr_array_add (d->items, v);
          }
        return OP_OK;
      }
    case '1': case 'e': case 0x90: case 'u': case 0x91:
      {                   /* POP_MARK, APPENDS, ADDITEMS, SETITEMS, FROZENSET: from the mark */
        GPtrArray *items = pop_mark (m);
        if (items == NULL)
          return OP_FAIL;
        gboolean ok = TRUE;
        if (op == 0x91)
          push (m, pv_new (m, PV_OPAQUE));
        else if (op != '1')
          {
            Pv *target = top (m);
            if (target == NULL)
              ok = FALSE;
            else if (op == 'u')
              ok = set_items (m, target, items);
            else if (op == 'e' && target->kind == PV_LIST)
              for (guint k = 0; k < items->len; k++)
                g_ptr_array_add (target->items, items->pdata[k]);
          }
        g_ptr_array_unref (items);
        return ok ? OP_OK : OP_FAIL;
      }
    default:
      return OP_OTHER;
    }
}

/* Globals and what would call them: only the callables of a state dict build anything. */
static OpResult
op_object (Machine *m, guint8 op)
{
  switch (op)
    {
    case 'c': case 0x93:                          /* GLOBAL module\nname\n, STACK_GLOBAL */
      {
        g_autofree char *mod = NULL;
        g_autofree char *name = NULL;
        if (op == 'c')
          {
            if ((mod = read_line (m)) == NULL || (name = read_line (m)) == NULL)
              return OP_FAIL;
          }
        else
          {
            POP_OR_FAIL (n);
            POP_OR_FAIL (md);
            if (n->kind != PV_STR || md->kind != PV_STR)
              {
                fail (m, "STACK_GLOBAL of a non-string");
                return OP_FAIL;
              }
            mod = g_strdup (md->s);
            name = g_strdup (n->s);
          }
        Pv *v = pv_new (m, PV_GLOBAL);
        v->s = g_strconcat (mod, ".", name, NULL);
        push (m, v);
        return OP_OK;
      }
    case 'R':                                     /* REDUCE */
      {
        POP_OR_FAIL (args);
        POP_OR_FAIL (fn);
        Pv *v = reduce (m, fn, args);
        if (v == NULL)
          return OP_FAIL;
        push (m, v);
        return OP_OK;
      }
    case 0x81: case 0x92:                         /* NEWOBJ cls args, NEWOBJ_EX + kwargs */
      {
        for (int k = op == 0x81 ? 2 : 3; k > 0; k--)
          if (pop (m) == NULL)
            return OP_FAIL;
        push (m, pv_new (m, PV_OPAQUE));
        return OP_OK;
      }
    case 'i': case 'o':                           /* INST module\nname\n, OBJ: from the mark */
      {
        if (op == 'i')
          {
            g_autofree char *mod = read_line (m);
            g_autofree char *name = mod ? read_line (m) : NULL;
            if (name == NULL)
              return OP_FAIL;
          }
        GPtrArray *items = pop_mark (m);
        if (items == NULL)
          return OP_FAIL;
        g_ptr_array_unref (items);
        push (m, pv_new (m, PV_OPAQUE));
        return OP_OK;
      }
    case 'b':                                     /* BUILD: state set on an object */
      {
        POP_OR_FAIL (state);
        Pv *obj = top (m);
        if (obj == NULL)
          return OP_FAIL;
        /* an object's state is kept (never applied): a pickled module's __dict__, or a
         * TorchScript module's attributes, whose tensors make its state dict */
        if (obj->kind == PV_OPAQUE && obj->items == NULL && state->kind == PV_DICT)
          obj->items = g_ptr_array_ref (state->items);
        return OP_OK;
      }
    case 'Q':                                     /* BINPERSID */
      {
        POP_OR_FAIL (pid);
        Pv *v = persistent_load (m, pid);
        if (v == NULL)
          return OP_FAIL;
        push (m, v);
        return OP_OK;
      }
    default:
      return OP_OTHER;
    }
}

/* The memo: PUT stores the top of the stack under an id, GET pushes it again. */
static OpResult
op_memo (Machine *m, guint8 op)
{
  guint64 id;
  const gboolean put = op == 'q' || op == 'r' || op == 'p' || op == 0x94;
  if (!put && op != 'h' && op != 'j' && op != 'g')
    return OP_OTHER;
  if (op == 'q' || op == 'h' || op == 'r' || op == 'j')
    {
      if (!read_arg (m, (op == 'q' || op == 'h') ? 1 : 4, &id))
        return OP_FAIL;
    }
  else if (op == 'p' || op == 'g')
    {
      g_autofree char *t = read_line (m);
      if (t == NULL)
        return OP_FAIL;
      id = g_ascii_strtoull (t, NULL, 10);
    }
  else
    id = g_hash_table_size (m->memo);            /* MEMOIZE */
  gpointer key = GSIZE_TO_POINTER ((gsize) id + 1);
  if (put)
    {
      Pv *v = top (m);
      if (v == NULL)
        return OP_FAIL;
      g_hash_table_insert (m->memo, key, v);
      return OP_OK;
    }
  Pv *v = g_hash_table_lookup (m->memo, key);
  if (v == NULL)
    {
      fail (m, "reads memo entry %" G_GUINT64_FORMAT ", never stored", id);
      return OP_FAIL;
    }
  push (m, v);
  return OP_OK;
}

/* Runs the pickle to its STOP; the value it leaves, or NULL with the error set. */
static Pv *
run (Machine *m)
{
  while (m->p < m->end)
    {
      guint8 op = *m->p++;
      if (op == 0x80 || op == 0x95)               /* PROTO, FRAME */
        {
          if (!need (m, op == 0x80 ? 1 : 8))
            return NULL;
          if (op == 0x80 && *m->p > 5)
            {
              fail (m, "pickle protocol %d (0-5 are known)", *m->p);
              return NULL;
            }
          m->p += op == 0x80 ? 1 : 8;
          continue;
        }
      if (op == '.')                              /* STOP */
        return pop (m);
      OpResult r = op_scalar (m, op);
      if (r == OP_OTHER)
        r = op_container (m, op);
      if (r == OP_OTHER)
        r = op_object (m, op);
      if (r == OP_OTHER)
        r = op_memo (m, op);
      if (r == OP_FAIL)
        return NULL;
      if (r == OP_OTHER)
        {
          m->p--;
          fail (m, "opcode 0x%02x is not one a state dict is saved with", op);
          return NULL;
        }
    }
  fail (m, "ends without STOP (truncated)");
  return NULL;
}

/* ------------------------------------------------------------------ the state dict */

static gboolean
dict_has_tensor (const Pv *d)
{
  if (d->kind != PV_DICT)
    return FALSE;
  for (guint k = 1; k < d->items->len; k += 2)
    if (((Pv *) d->items->pdata[k])->kind == PV_TENSOR)
      return TRUE;
  return FALSE;
}

static Pv *
dict_get (const Pv *d, const char *key)
{
  for (guint k = 0; k + 1 < d->items->len; k += 2)
    {
      const Pv *kv = d->items->pdata[k];
      if (kv->kind == PV_STR && strcmp (kv->s, key) == 0)
        return d->items->pdata[k + 1];
    }
  return NULL;
}

#define MODULE_DEPTH_MAX 64

static void flatten_module (Machine *m, const Pv *obj, const char *prefix, Pv *out,
                            GHashTable *seen, int depth);

/* One named value of a module: a tensor under prefix + key (when tensors are wanted), a module
 * with a kept state flattened under prefix + key + "." (when modules are). */
static void
flatten_entry (Machine *m, const char *prefix, const char *key, const Pv *v, gboolean modules,
               Pv *out, GHashTable *seen, int depth)
{
  g_autofree char *name = g_strconcat (prefix, key, NULL);
  if (v->kind == PV_TENSOR && !modules)
    {
      g_ptr_array_add (out->items, new_str (m, (const guint8 *) name, strlen (name)));
      g_ptr_array_add (out->items, (gpointer) v);
    }
  else if (v->kind == PV_OPAQUE && v->items && modules)
    {
      g_autofree char *sub = g_strconcat (name, ".", NULL);
      flatten_module (m, v, sub, out, seen, depth + 1);
    }
}

/* The state dict of a pickled module (torch.save (model): its __dict__'s _parameters, _buffers
 * and _modules) or of a TorchScript module (torch.jit.save: its attributes, tensors and
 * submodules alike), read from the objects' kept states; nothing is called. */
static void
flatten_module (Machine *m, const Pv *obj, const char *prefix, Pv *out, GHashTable *seen,
                int depth)
{
  if (depth > MODULE_DEPTH_MAX || g_hash_table_contains (seen, obj))
    return;
  g_hash_table_add (seen, (gpointer) obj);
  for (guint k = 0; k + 1 < obj->items->len; k += 2)
    {
      const Pv *key = obj->items->pdata[k], *v = obj->items->pdata[k + 1];
      if (key->kind != PV_STR)
        continue;
      const gboolean named = strcmp (key->s, "_parameters") == 0 ||
                             strcmp (key->s, "_buffers") == 0;
      if (named || strcmp (key->s, "_modules") == 0)
        {
          for (guint e = 0; v->kind == PV_DICT && e + 1 < v->items->len; e += 2)
            {
              const Pv *ek = v->items->pdata[e];
              if (ek->kind == PV_STR)
                flatten_entry (m, prefix, ek->s, v->items->pdata[e + 1], !named, out, seen,
                               depth);
            }
        }
      else if (key->s[0] != '_')   /* TorchScript keeps them all as plain attributes */
        flatten_entry (m, prefix, key->s, v, v->kind == PV_OPAQUE, out, seen, depth);
    }
}

/* A pickled or TorchScript module's state dict, or NULL when `obj` holds no module tensor. */
static Pv *
module_state_dict (Machine *m, const Pv *obj)
{
  if (obj->kind != PV_OPAQUE || obj->items == NULL)
    return NULL;
  Pv *sd = pv_new (m, PV_DICT);
  sd->items = g_ptr_array_new ();
  GHashTable *seen = g_hash_table_new (g_direct_hash, g_direct_equal);
  flatten_module (m, obj, "", sd, seen, 0);
  g_hash_table_unref (seen);
  return dict_has_tensor (sd) ? sd : NULL;
}

static Pv *
find_state_dict (Machine *m, Pv *root)
{
  static const char *const keys[] = { "state_dict", "model", "model_state_dict", "module",
                                      "state_dict_ema", "model_ema" };
  if (dict_has_tensor (root))
    return root;
  if (root->kind == PV_DICT)
    {
      for (guint k = 0; k < G_N_ELEMENTS (keys); k++)
        {
          Pv *v = dict_get (root, keys[k]);
          if (v && dict_has_tensor (v))
            return v;
          Pv *sd = v ? module_state_dict (m, v) : NULL;   /* {"model": model, …} */
          if (sd)
            return sd;
        }
      GString *names = g_string_new (NULL);
      for (guint k = 0; k < root->items->len && names->len < 200; k += 2)
        {
          const Pv *kv = root->items->pdata[k];
          g_string_append_printf (names, "%s%s", k ? ", " : "",
                                  kv->kind == PV_STR ? kv->s : "(not a string)");
        }
      g_set_error (m->error, VL_ERROR, VL_ERROR_MISSING,
                   "%s: no state dict in this PyTorch checkpoint: its top level is a dict (keys: %s)"
                   " without tensors, and none of state_dict, model, model_state_dict, module, "
                   "state_dict_ema, model_ema holds them", m->path,
                   root->items->len ? names->str : "nothing");
      g_string_free (names, TRUE);
      return NULL;
    }
  Pv *sd = module_state_dict (m, root);
  if (sd)
    return sd;
  g_set_error (m->error, VL_ERROR, VL_ERROR_FORMAT,
               "%s: this PyTorch checkpoint holds a pickled object with no module's tensors in "
               "its state; save the model's state dict (torch.save (model.state_dict ()))",
               m->path);
  return NULL;
}

/* ------------------------------------------------------------------ the archive */

typedef struct {
  guint8 *data;
  guint64 size;
} Blob;

/* The elements a view spans in its storage: offset + sum (size - 1) * stride + 1 (0 if empty). */
static gboolean
view_extent (const Pv *t, int64_t *numel, int64_t *extent)
{
  int64_t n = 1, last = t->i;
  for (int d = 0; d < t->ndim; d++)
    {
      if (t->shape[d] == 0)
        {
          *numel = 0;
          *extent = 0;
          return TRUE;
        }
      if (n > INT64_MAX / t->shape[d])
        return FALSE;
      n *= t->shape[d];
      if (t->stride[d] != 0 && t->shape[d] - 1 > (INT64_MAX - last) / t->stride[d])
        return FALSE;
      last += (t->shape[d] - 1) * t->stride[d];
    }
  *numel = n;
  *extent = last + 1;
  return TRUE;
}

static gboolean
is_contiguous (const Pv *t)
{
  int64_t want = 1;
  for (int d = t->ndim - 1; d >= 0; d--)
    {
      if (t->shape[d] != 1 && t->stride[d] != want)
        return FALSE;
      want *= t->shape[d];
    }
  return TRUE;
}

/* Copies a strided view element by element into dst (row-major). */
static void
gather (const Pv *t, const guint8 *base, size_t es, guint8 *dst, int64_t numel)
{
  int64_t idx[VL_MAX_DIMS] = { 0 };
  for (int64_t e = 0; e < numel; e++)
    {
      int64_t off = t->i;
      for (int d = 0; d < t->ndim; d++)
        off += idx[d] * t->stride[d];
      memcpy (dst + (size_t) e * es, base + (size_t) off * es, es);
      for (int d = t->ndim - 1; d >= 0; d--)
        {
          if (++idx[d] < t->shape[d])
            break;
          idx[d] = 0;
        }
    }
}

/* One checkpoint being read: the archive, where its records live, and what has been read. */
typedef struct {
  const char   *path;
  zip_t        *za;
  char         *prefix;   /* "NAME/" */
  GHashTable   *blobs;    /* storage key -> Blob */
  guint64       budget, spent;
  VlTensorTable *table;  /* the caller's */
  GError      **error;
} Reader;

/* NAME/data.pkl (the archive's one top folder), after checking NAME/byteorder. */
static guint8 *
read_pickle (Reader *r, guint64 *len)
{
  zip_int64_t n_entries = zip_get_num_entries (r->za, 0), pkl = -1;
  for (zip_int64_t e = 0; e < n_entries && pkl < 0; e++)
    {
      const char *name = zip_get_name (r->za, (zip_uint64_t) e, 0);
      const char *slash = name ? strchr (name, '/') : NULL;
      if (slash && strcmp (slash + 1, "data.pkl") == 0)
        {
          pkl = e;
          r->prefix = g_strndup (name, (gsize) (slash - name + 1));
        }
    }
  if (pkl < 0)
    {
      g_set_error (r->error, VL_ERROR, VL_ERROR_FORMAT, "%s: a zip archive without "
                   "NAME/data.pkl, so not a PyTorch checkpoint (torch.save writes one)", r->path);
      return NULL;
    }
  g_autofree char *bo_name = g_strconcat (r->prefix, "byteorder", NULL);
  zip_int64_t bo = zip_name_locate (r->za, bo_name, 0);
  zip_stat_t bs;
  if (bo >= 0 && zip_stat_index (r->za, (zip_uint64_t) bo, 0, &bs) == 0 && bs.size == 3)
    {
      g_autofree guint8 *b = vl_zip_read_entry (r->za, (zip_uint64_t) bo, 3, r->path, bo_name,
                                         r->error);
      if (b == NULL)
        return NULL;
      if (memcmp (b, "big", 3) == 0)
        {
          g_set_error (r->error, VL_ERROR, VL_ERROR_FORMAT, "%s: a PyTorch checkpoint saved on "
                       "a big-endian machine (its byteorder says so); re-save it on a "
                       "little-endian one", r->path);
          return NULL;
        }
    }
  zip_stat_t ps;
  if (zip_stat_index (r->za, (zip_uint64_t) pkl, 0, &ps) != 0 || !(ps.valid & ZIP_STAT_SIZE))
    {
      g_set_error (r->error, VL_ERROR, VL_ERROR_FORMAT, "%s: data.pkl: %s", r->path,
                   zip_strerror (r->za));
      return NULL;
    }
  if (ps.size > PICKLE_MAX)
    {
      g_set_error (r->error, VL_ERROR, VL_ERROR_FORMAT, "%s: data.pkl claims %" G_GUINT64_FORMAT
                   " bytes, more than the %" G_GUINT64_FORMAT " a state dict's pickle needs",
                   r->path, (guint64) ps.size, PICKLE_MAX);
      return NULL;
    }
  *len = ps.size;
  return vl_zip_read_entry (r->za, (zip_uint64_t) pkl, ps.size, r->path, "data.pkl", r->error);
}

/* A storage's bytes, read once however many tensors view it; the bytes read (and copied) in all
 * are capped against the file's size (torch.save stores them uncompressed). */
static Blob *
storage_blob (Reader *r, const Pv *st, const char *tensor)
{
  Blob *blob = g_hash_table_lookup (r->blobs, st->s);
  if (blob != NULL)
    return blob;
  g_autofree char *ename = g_strconcat (r->prefix, "data/", st->s, NULL);
  zip_int64_t e = zip_name_locate (r->za, ename, 0);
  zip_stat_t s;
  if (e < 0 || zip_stat_index (r->za, (zip_uint64_t) e, 0, &s) != 0
      || !(s.valid & ZIP_STAT_SIZE))
    {
      g_set_error (r->error, VL_ERROR, VL_ERROR_FORMAT, "%s: tensor %s: its storage %s is "
                   "missing from the archive (truncated?)", r->path, tensor, ename);
      return NULL;
    }
  if (s.size > r->budget - r->spent)
    {
      g_set_error (r->error, VL_ERROR, VL_ERROR_FORMAT, "%s: tensor %s: its storage claims %"
                   G_GUINT64_FORMAT " bytes, beyond what this checkpoint's size allows", r->path,
                   tensor, (guint64) s.size);
      return NULL;
    }
  guint8 *data = vl_zip_read_entry (r->za, (zip_uint64_t) e, s.size, r->path, ename, r->error);
  if (data == NULL)
    return NULL;
  r->spent += s.size;
  blob = g_new0 (Blob, 1);
  blob->size = s.size;
  blob->data = data;
  g_ptr_array_add (r->table->owned, data);
  g_hash_table_insert (r->blobs, g_strdup (st->s), blob);
  return blob;
}

/* The tensor `t` of the state dict as a VlTensorInfo named `name` (a later one of the same name
 * replaces it, as a dict's later key does). */
static gboolean
add_tensor (Reader *r, const char *name, const Pv *t)
{
  const Pv *st = t->storage;
  const size_t es = vl_dtype_size (st->dtype);
  Blob *blob = storage_blob (r, st, name);
  if (blob == NULL)
    return FALSE;
  int64_t numel, extent;
  if (!view_extent (t, &numel, &extent) || (guint64) extent > blob->size / es)
    {
      g_autofree char *shape = vl_shape_to_string (t->ndim, t->shape);
      g_set_error (r->error, VL_ERROR, VL_ERROR_FORMAT, "%s: tensor %s: shape %s at offset %"
                   G_GINT64_FORMAT " reaches beyond its storage of %" G_GUINT64_FORMAT
                   " values (%s)", r->path, name, shape, t->i, blob->size / es, st->type);
      return FALSE;
    }
  VlTensorInfo info = { 0 };
  info.dtype = st->dtype;
  info.ndim = t->ndim;
  memcpy (info.shape, t->shape, sizeof info.shape);
  info.numel = numel;
  info.nbytes = (size_t) numel * es;
  if (is_contiguous (t) || numel == 0)
    info.data = blob->data + (size_t) t->i * es;
  else
    {
      /* a strided view is copied out; its copy counts against the same budget, and a view
       * with more elements than its storage (a stride of 0: expand ()) is refused */
      if ((guint64) numel > blob->size / es || info.nbytes > r->budget - r->spent)
        {
          g_set_error (r->error, VL_ERROR, VL_ERROR_FORMAT, "%s: tensor %s: a view of %"
                       G_GINT64_FORMAT " values over a storage of %" G_GUINT64_FORMAT
                       " (an expanded tensor, or a lying stride); save it contiguous",
                       r->path, name, numel, blob->size / es);
          return FALSE;
        }
      r->spent += info.nbytes;
      guint8 *copy = g_malloc (MAX (info.nbytes, 1));
      gather (t, blob->data, es, copy, numel);
      g_ptr_array_add (r->table->owned, copy);
      info.data = copy;
    }
  vl_tensor_table_add (r->table, name, &info);
  return TRUE;
}

/* Every tensor of the state dict, DataParallel's "module." prefix dropped when all have it. */
static gboolean
add_state_dict (Reader *r, const Pv *sd)
{
  gboolean strip = TRUE;
  for (guint k = 0; k + 1 < sd->items->len; k += 2)
    {
      const Pv *key = sd->items->pdata[k], *val = sd->items->pdata[k + 1];
      if (val->kind == PV_TENSOR && (key->kind != PV_STR || !g_str_has_prefix (key->s, "module.")))
        strip = FALSE;
    }
  for (guint k = 0; k + 1 < sd->items->len; k += 2)
    {
      const Pv *key = sd->items->pdata[k], *t = sd->items->pdata[k + 1];
      if (t->kind != PV_TENSOR)
        continue;
      if (key->kind != PV_STR)
        {
          g_set_error (r->error, VL_ERROR, VL_ERROR_FORMAT, "%s: a tensor in the state dict "
                       "under a key that is not a string", r->path);
          return FALSE;
        }
      if (!add_tensor (r, strip ? key->s + strlen ("module.") : key->s, t))
        return FALSE;
    }
  return TRUE;
}

gboolean
vl_torch_ckpt_read (const char *path, zip_t *za, size_t size, VlTensorTable *table,
                    GError **error)
{
  Reader r = { .path = path, .za = za, .table = table, .error = error,
               .budget = vl_zip_budget (size) };
  r.blobs = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  Machine m = { .path = path, .error = error };
  m.all = g_ptr_array_new_with_free_func (pv_free);
  m.stack = g_ptr_array_new ();
  m.memo = g_hash_table_new (g_direct_hash, g_direct_equal);

  guint64 len = 0;
  g_autofree guint8 *pickle = read_pickle (&r, &len);
  gboolean ok = FALSE;
  if (pickle != NULL)
    {
      m.start = m.p = pickle;
      m.end = pickle + len;
      Pv *root = run (&m);
      Pv *sd = root ? find_state_dict (&m, root) : NULL;
      ok = sd != NULL && add_state_dict (&r, sd);
    }
  g_hash_table_unref (r.blobs);
  g_free (r.prefix);
  g_hash_table_unref (m.memo);
  g_ptr_array_unref (m.stack);
  g_ptr_array_unref (m.all);
  return ok;
}
