//! Edits to a built component that Rust cannot express, for the sandbox tests: a main
//! module with extra linear memories, and an `evaluate` that grows its table first.
//! Only what the `hostile` component contains is handled; anything else panics.
#![expect(clippy::expect_used, reason = "test support: a component it cannot edit is a broken test")]

/// Reads an unsigned LEB128 at `*pos`.
fn leb(bytes: &[u8], pos: &mut usize) -> u64 {
    let (mut value, mut shift) = (0u64, 0);
    loop {
        let byte = bytes[*pos];
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return value;
        }
        shift += 7;
    }
}

fn uleb(mut value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

fn sleb(mut value: i64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        let done = (value == 0 && byte & 0x40 == 0) || (value == -1 && byte & 0x40 != 0);
        out.push(if done { byte } else { byte | 0x80 });
        if done {
            return out;
        }
    }
}

/// The sections after the 8-byte header: (id, payload).
fn sections(bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut pos = 8;
    let mut out = Vec::new();
    while pos < bytes.len() {
        let id = bytes[pos];
        pos += 1;
        let len = leb(bytes, &mut pos) as usize;
        out.push((id, bytes[pos..pos + len].to_vec()));
        pos += len;
    }
    out
}

fn assemble(header: &[u8], sections: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut out = header[..8].to_vec();
    for (id, payload) in sections {
        out.push(*id);
        out.extend(uleb(payload.len() as u64));
        out.extend(payload);
    }
    out
}

/// `component` with its largest core module (the guest's own code) replaced by `edit`'s.
fn edit_main_module(component: &[u8], edit: impl Fn(&[u8]) -> Vec<u8>) -> Vec<u8> {
    let mut top = sections(component);
    // Section 1 of a component is a core module.
    let main = (0..top.len()).filter(|&i| top[i].0 == 1).max_by_key(|&i| top[i].1.len()).expect("a core module");
    top[main].1 = edit(&top[main].1);
    assemble(component, &top)
}

/// `component` whose main module declares `extra` more memories of `pages` pages each.
pub fn add_memories(component: &[u8], extra: u32, pages: u32) -> Vec<u8> {
    edit_main_module(component, |module| {
        let mut secs = sections(module);
        let memory = secs.iter_mut().find(|(id, _)| *id == 5).expect("the main module defines its memory");
        let mut pos = 0;
        let count = leb(&memory.1, &mut pos);
        let mut payload = uleb(count + u64::from(extra));
        payload.extend(&memory.1[pos..]);
        for _ in 0..extra {
            payload.push(0x00); // limits: a minimum only
            payload.extend(uleb(u64::from(pages)));
        }
        memory.1 = payload;
        assemble(module, &secs)
    })
}

/// Skips a `limits` at `*pos` (memory or table), returning its flags.
fn skip_limits(bytes: &[u8], pos: &mut usize) -> u8 {
    let flags = bytes[*pos];
    *pos += 1;
    leb(bytes, pos);
    if flags & 1 != 0 {
        leb(bytes, pos);
    }
    flags
}

/// `component` whose `evaluate` first grows table 0 by `delta` null elements, with the
/// table's declared maximum removed so that only the host's limit can stop it.
pub fn grow_table_in_evaluate(component: &[u8], delta: i32) -> Vec<u8> {
    edit_main_module(component, |module| {
        let mut secs = sections(module);
        let mut imported_funcs = 0u64;
        if let Some((_, imports)) = secs.iter().find(|(id, _)| *id == 2) {
            let mut pos = 0;
            for _ in 0..leb(imports, &mut pos) {
                for _ in 0..2 {
                    let len = leb(imports, &mut pos) as usize;
                    pos += len;
                }
                let kind = imports[pos];
                pos += 1;
                match kind {
                    0 => {
                        leb(imports, &mut pos);
                        imported_funcs += 1;
                    }
                    2 => {
                        skip_limits(imports, &mut pos);
                    }
                    3 => pos += 2,
                    other => panic!("an import of kind {other}"),
                }
            }
        }
        let (_, exports) = secs.iter().find(|(id, _)| *id == 7).expect("exports");
        let mut pos = 0;
        let mut evaluate = None;
        for _ in 0..leb(exports, &mut pos) {
            let len = leb(exports, &mut pos) as usize;
            let name = String::from_utf8_lossy(&exports[pos..pos + len]).into_owned();
            pos += len;
            let kind = exports[pos];
            pos += 1;
            let index = leb(exports, &mut pos);
            if kind == 0 && name.ends_with("#evaluate") {
                evaluate = Some(index);
            }
        }
        let body_index = (evaluate.expect("an evaluate export") - imported_funcs) as usize;
        // The table section: drop table 0's maximum.
        let table = secs.iter_mut().find(|(id, _)| *id == 4).expect("the main module defines its table");
        let mut pos = 0;
        let count = leb(&table.1, &mut pos);
        let reftype = table.1[pos];
        assert_eq!(reftype, 0x70, "table 0 holds funcref");
        pos += 1;
        let flags = table.1[pos];
        pos += 1;
        let min = leb(&table.1, &mut pos);
        if flags & 1 != 0 {
            leb(&table.1, &mut pos);
        }
        let mut payload = uleb(count);
        payload.push(reftype);
        payload.push(0x00);
        payload.extend(uleb(min));
        payload.extend(&table.1[pos..]);
        table.1 = payload;
        // The code section: insert `ref.null func; i32.const delta; table.grow 0; drop`
        // after the locals of `evaluate`.
        let code = secs.iter_mut().find(|(id, _)| *id == 10).expect("code");
        let mut pos = 0;
        let count = leb(&code.1, &mut pos);
        let mut payload = uleb(count);
        for i in 0..count as usize {
            let size = leb(&code.1, &mut pos) as usize;
            let body = &code.1[pos..pos + size];
            pos += size;
            if i != body_index {
                payload.extend(uleb(size as u64));
                payload.extend(body);
                continue;
            }
            let mut at = 0;
            for _ in 0..leb(body, &mut at) {
                leb(body, &mut at);
                let valtype = body[at];
                assert!(!matches!(valtype, 0x63 | 0x64), "a typed-reference local");
                at += 1;
            }
            let mut edited = body[..at].to_vec();
            edited.extend([0xd0, 0x70, 0x41]);
            edited.extend(sleb(i64::from(delta)));
            edited.extend([0xfc, 0x0f, 0x00, 0x1a]);
            edited.extend(&body[at..]);
            payload.extend(uleb(edited.len() as u64));
            payload.extend(edited);
        }
        code.1 = payload;
        assemble(module, &secs)
    })
}
