# Generated from ncplib/_wire.py by tools/gen_wire_pxi.py: do not edit.
# Included by _codec.pyx after its cimports (uint32_t).

cdef enum:
    HEADER_SIZE = 0x20
    FOOTER_SIZE = 0x8
    FIELD_HEADER_SIZE = 0xc
    PARAM_HEADER_SIZE = 0x8
    MIN_PACKET_SIZE = 0x28
    MAX_FIELD_WORDS = 0xffffff
    MAX_PACKET_ITEMS = 0x10000
    T_I32 = 0x0
    T_U32 = 0x1
    T_STRING = 0x2
    T_I64 = 0x3
    T_U64 = 0x4
    T_F32 = 0x10
    T_F64 = 0x11
    T_RAW = 0x80

cdef extern from *:
    """
    #define NCP_HEADER_MAGIC_WORD 0xaabbccddu
    #define NCP_FOOTER_MAGIC_WORD 0xddccbbaau
    """
    const uint32_t HEADER_MAGIC_WORD "NCP_HEADER_MAGIC_WORD"
    const uint32_t FOOTER_MAGIC_WORD "NCP_FOOTER_MAGIC_WORD"
