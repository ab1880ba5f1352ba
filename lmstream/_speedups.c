/* lmstream._speedups: a vectorcall constructor for slotted classes whose __init__ only
 * stores its arguments (GenerationChunk and friends).
 *
 * CPython 3.11 calls a class with a Python __init__ through type.__call__, which packs the
 * arguments into a tuple, keywords into a dict, and unpacks them again for __init__: a
 * provider's GenerationChunk(text=t) costs ~180 ns that way. A type object's own
 * tp_vectorcall receives the arguments as they are; this one allocates the instance and
 * stores each argument in its slot, as the Python __init__ would (~45 ns).
 *
 * Anything the fast path does not handle (a subclass, a positional or keyword it does not
 * know, an argument given twice, a required one missing) goes the generic way, through
 * type.__call__ and the Python __init__, so behaviour and error messages stay CPython's.
 * Without this module (no C compiler at install) the Python __init__ does the same work.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#define MAX_CLASSES 16
#define MAX_FIELDS 8

typedef struct {
    PyTypeObject *type;
    Py_ssize_t nfields;
    PyObject *names[MAX_FIELDS];    /* the __init__ parameters, in order */
    PyObject *defaults[MAX_FIELDS]; /* NULL: required */
    Py_ssize_t offsets[MAX_FIELDS]; /* each parameter's slot */
} Spec;

static Spec specs[MAX_CLASSES];
static int nspecs;

static PyObject *
generic(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    PyObject *tuple = PyTuple_New(nargs);
    if (tuple == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < nargs; i++) {
        PyTuple_SET_ITEM(tuple, i, Py_NewRef(args[i]));
    }
    PyObject *kwargs = NULL;
    if (nkw > 0) {
        kwargs = PyDict_New();
        for (Py_ssize_t i = 0; kwargs != NULL && i < nkw; i++) {
            if (PyDict_SetItem(kwargs, PyTuple_GET_ITEM(kwnames, i), args[nargs + i]) < 0) {
                Py_CLEAR(kwargs);
            }
        }
        if (kwargs == NULL) {
            Py_DECREF(tuple);
            return NULL;
        }
    }
    PyObject *result = PyType_Type.tp_call(callable, tuple, kwargs);
    Py_DECREF(tuple);
    Py_XDECREF(kwargs);
    return result;
}

static Py_ssize_t
field_index(const Spec *spec, PyObject *name)
{
    for (Py_ssize_t i = 0; i < spec->nfields; i++) {
        if (spec->names[i] == name) { /* compiled keywords are interned */
            return i;
        }
    }
    if (!PyUnicode_Check(name)) {
        return -1;
    }
    for (Py_ssize_t i = 0; i < spec->nfields; i++) {
        if (PyUnicode_Compare(spec->names[i], name) == 0) {
            return i;
        }
    }
    return -1;
}

/* The arguments of a call in parameter order, or -1: the generic path must take it. */
static int
gather(const Spec *spec, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
       PyObject **values)
{
    if (nargs > spec->nfields) {
        return -1;
    }
    for (Py_ssize_t i = 0; i < spec->nfields; i++) {
        values[i] = i < nargs ? args[i] : NULL;
    }
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t k = 0; k < nkw; k++) {
        Py_ssize_t i = field_index(spec, PyTuple_GET_ITEM(kwnames, k));
        if (i < 0 || values[i] != NULL) {
            return -1;
        }
        values[i] = args[nargs + k];
    }
    for (Py_ssize_t i = 0; i < spec->nfields; i++) {
        if (values[i] == NULL && (values[i] = spec->defaults[i]) == NULL) {
            return -1;
        }
    }
    return 0;
}

static PyObject *
construct(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    const Spec *spec = NULL;
    for (int i = 0; i < nspecs; i++) {
        if ((PyObject *)specs[i].type == callable) {
            spec = &specs[i];
            break;
        }
    }
    PyObject *values[MAX_FIELDS];
    if (spec == NULL || gather(spec, args, PyVectorcall_NARGS(nargsf), kwnames, values) < 0) {
        return generic(callable, args, nargsf, kwnames);
    }
    PyTypeObject *type = spec->type;
    PyObject *self = type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < spec->nfields; i++) {
        *(PyObject **)((char *)self + spec->offsets[i]) = Py_NewRef(values[i]);
    }
    return self;
}

/* The slot offset of a writable object slot ``name`` of ``type``, or -1 with an error. */
static Py_ssize_t
slot_offset(PyTypeObject *type, PyObject *name)
{
    PyObject *descr = PyObject_GetAttr((PyObject *)type, name);
    if (descr == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError)) {
            return -1;
        }
        PyErr_Clear();
    }
    Py_ssize_t offset = -1;
    if (descr != NULL && Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
        PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
        PyTypeObject *owner = ((PyMemberDescrObject *)descr)->d_common.d_type;
        if (member->type == T_OBJECT_EX && !(member->flags & READONLY)
            && PyType_IsSubtype(type, owner)) {
            offset = member->offset;
        }
    }
    Py_XDECREF(descr);
    if (offset < 0) {
        PyErr_Format(PyExc_TypeError, "%R is not a writable slot of %R", name, type);
    }
    return offset;
}

static int
fill_spec(Spec *spec, PyTypeObject *type, PyObject *names, PyObject *defaults)
{
    Py_ssize_t n = PyTuple_GET_SIZE(names), ndefaults = PyTuple_GET_SIZE(defaults);
    if (n > MAX_FIELDS || ndefaults > n) {
        PyErr_SetString(PyExc_ValueError, "too many fields or defaults");
        return -1;
    }
    spec->nfields = n;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *name = PyTuple_GET_ITEM(names, i);
        if (!PyUnicode_CheckExact(name)) {
            PyErr_SetString(PyExc_TypeError, "field names must be str");
            return -1;
        }
        if ((spec->offsets[i] = slot_offset(type, name)) < 0) {
            return -1;
        }
        Py_INCREF(name);
        PyUnicode_InternInPlace(&name);
        spec->names[i] = name;
        Py_ssize_t d = i - (n - ndefaults); /* defaults belong to the last parameters */
        spec->defaults[i] = d >= 0 ? Py_NewRef(PyTuple_GET_ITEM(defaults, d)) : NULL;
    }
    return 0;
}

PyDoc_STRVAR(install_doc,
"install(cls, names, defaults, /)\n--\n\n"
"Build instances of ``cls`` without calling its ``__init__``, which must only store its\n"
"parameters ``names`` (with ``defaults`` for the last ones) in the slots of those names.");

static PyObject *
install(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyType_Check(args[0]) || !PyTuple_Check(args[1])
        || !PyTuple_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "install(cls, names: tuple, defaults: tuple)");
        return NULL;
    }
    PyTypeObject *type = (PyTypeObject *)args[0];
    if (!(type->tp_flags & Py_TPFLAGS_HEAPTYPE) || type->tp_vectorcall != NULL
        || type->tp_new != PyBaseObject_Type.tp_new) {
        PyErr_Format(PyExc_TypeError, "%R is not a plain class of its own", type);
        return NULL;
    }
    if (nspecs == MAX_CLASSES) {
        PyErr_SetString(PyExc_RuntimeError, "too many classes");
        return NULL;
    }
    Spec *spec = &specs[nspecs];
    memset(spec, 0, sizeof(Spec));
    if (fill_spec(spec, type, args[1], args[2]) < 0) {
        for (Py_ssize_t i = 0; i < MAX_FIELDS; i++) {
            Py_CLEAR(spec->names[i]);
            Py_CLEAR(spec->defaults[i]);
        }
        return NULL;
    }
    spec->type = (PyTypeObject *)Py_NewRef(type); /* classes live as long as the process */
    nspecs++;
    type->tp_vectorcall = construct;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(installed_doc,
"installed(cls, /)\n--\n\nWhether ``cls`` is built by this module's constructor.");

static PyObject *
installed(PyObject *module, PyObject *cls)
{
    return PyBool_FromLong(PyType_Check(cls)
                           && ((PyTypeObject *)cls)->tp_vectorcall == construct);
}

static PyMethodDef methods[] = {
    {"install", (PyCFunction)(void (*)(void))install, METH_FASTCALL, install_doc},
    {"installed", installed, METH_O, installed_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "lmstream._speedups",
    .m_doc = "A vectorcall constructor for lmstream's slotted chunk classes.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModule_Create(&module_def);
}
