//! `#[contract]`: turns a module of `#[entry]` functions into a Chroma contract.
//! See the `chroma-sdk` crate for the user-facing documentation.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote};
use syn::spanned::Spanned;
use syn::{parse_macro_input, FnArg, Ident, Item, ItemFn, ItemMod, Pat, ReturnType, Type};

use chroma_host_api::abi::{is_valid_method_name, ABI_SECTION};
use chroma_host_api::limits::MAX_METHOD_NAME_LEN;

/// Most arguments an entry point may take (the codec's largest tuple).
const MAX_ARGS: usize = 8;

/// Export names the Wasm module itself uses.
const RESERVED_EXPORTS: &[&str] = &["memory"];

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Mutating,
    View,
    Init,
}

struct Entry {
    name: Ident,
    kind: Kind,
    args: Vec<(Ident, Type)>,
    ret: Option<Type>,
}

/// Marks a module as a contract. Inside it, `#[entry]` marks a mutating entry
/// point, `#[entry(view)]` a read-only one and `#[entry(init)]` the constructor
/// (at most one). Entry points take owned arguments of ABI types and return one.
///
/// Generated in the module: a Wasm export per entry point (on `wasm32`), the
/// ABI custom section, and `pub const CONTRACT: chroma_sdk::ContractDef`.
#[proc_macro_attribute]
pub fn contract(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return syn::Error::new(Span::call_site(), "#[contract] takes no arguments").to_compile_error().into();
    }
    let module = parse_macro_input!(item as ItemMod);
    match expand(module) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn entry_kind(func: &mut ItemFn) -> syn::Result<Option<Kind>> {
    let mut kind = None;
    let mut error = None;
    func.attrs.retain(|attr| {
        if !attr.path().is_ident("entry") {
            return true;
        }
        let parsed = match &attr.meta {
            syn::Meta::Path(_) => Ok(Kind::Mutating),
            syn::Meta::List(list) => match list.parse_args::<Ident>() {
                Ok(id) if id == "view" => Ok(Kind::View),
                Ok(id) if id == "init" => Ok(Kind::Init),
                _ => Err(syn::Error::new(list.span(), "expected #[entry], #[entry(view)] or #[entry(init)]")),
            },
            syn::Meta::NameValue(nv) => Err(syn::Error::new(nv.span(), "expected #[entry(view)] or #[entry(init)]")),
        };
        match parsed {
            Ok(k) if kind.is_none() => kind = Some(k),
            Ok(_) => error = Some(syn::Error::new(attr.span(), "duplicate #[entry] attribute")),
            Err(e) => error = Some(e),
        }
        false
    });
    match error {
        Some(e) => Err(e),
        None => Ok(kind),
    }
}

fn parse_entry(func: &ItemFn, kind: Kind) -> syn::Result<Entry> {
    let sig = &func.sig;
    if sig.asyncness.is_some() || sig.constness.is_some() || sig.unsafety.is_some() {
        return Err(syn::Error::new(sig.span(), "entry points must be plain (not async, const or unsafe) functions"));
    }
    if !sig.generics.params.is_empty() {
        return Err(syn::Error::new(sig.generics.span(), "entry points cannot be generic"));
    }
    let name = sig.ident.clone();
    let name_text = name.to_string();
    if !is_valid_method_name(&name_text) || name_text.starts_with("__") || RESERVED_EXPORTS.contains(&name_text.as_str()) {
        return Err(syn::Error::new(
            name.span(),
            format!("`{name_text}` cannot be an entry point name: use an identifier of at most {MAX_METHOD_NAME_LEN} bytes, not starting with `__`, other than {RESERVED_EXPORTS:?}"),
        ));
    }
    let mut args = Vec::new();
    for input in &sig.inputs {
        match input {
            FnArg::Typed(pat_type) => match &*pat_type.pat {
                Pat::Ident(pat) if pat.by_ref.is_none() && pat.subpat.is_none() => {
                    if matches!(&*pat_type.ty, Type::Reference(_)) {
                        return Err(syn::Error::new(pat_type.ty.span(), "entry point arguments must be owned types"));
                    }
                    args.push((pat.ident.clone(), (*pat_type.ty).clone()))
                }
                other => return Err(syn::Error::new(other.span(), "entry point arguments must be plain names")),
            },
            FnArg::Receiver(r) => return Err(syn::Error::new(r.span(), "entry points are free functions (no self)")),
        }
    }
    if args.len() > MAX_ARGS {
        return Err(syn::Error::new(sig.inputs.span(), format!("entry points take at most {MAX_ARGS} arguments")));
    }
    let ret = match &sig.output {
        ReturnType::Default => None,
        ReturnType::Type(_, ty) => Some((**ty).clone()),
    };
    if kind == Kind::Init && ret.is_some() {
        return Err(syn::Error::new(sig.output.span(), "#[entry(init)] returns nothing"));
    }
    Ok(Entry { name, kind, args, ret })
}

fn expand(mut module: ItemMod) -> syn::Result<TokenStream2> {
    let module_name = module.ident.to_string();
    let Some((_, items)) = module.content.as_mut() else {
        return Err(syn::Error::new(module.span(), "#[contract] needs an inline module: `mod name { ... }`"));
    };
    let mut entries = Vec::new();
    for item in items.iter_mut() {
        if let Item::Fn(func) = item {
            if let Some(kind) = entry_kind(func)? {
                entries.push(parse_entry(func, kind)?);
            }
        }
    }
    if entries.iter().filter(|e| e.kind == Kind::Init).count() > 1 {
        return Err(syn::Error::new(module.ident.span(), "a contract has at most one #[entry(init)]"));
    }
    if entries.is_empty() {
        return Err(syn::Error::new(module.ident.span(), "a contract needs at least one #[entry] function"));
    }

    let p = quote!(::chroma_sdk::__private);
    let mut descs = Vec::new();
    let mut runners = Vec::new();
    let mut dispatch_arms = Vec::new();
    for entry in &entries {
        let name = &entry.name;
        let name_str = name.to_string();
        let kind = match entry.kind {
            Kind::Mutating => quote!(#p::MethodKind::Mutating),
            Kind::View => quote!(#p::MethodKind::View),
            Kind::Init => quote!(#p::MethodKind::Init),
        };
        let arg_names: Vec<&Ident> = entry.args.iter().map(|(n, _)| n).collect();
        let arg_types: Vec<&Type> = entry.args.iter().map(|(_, t)| t).collect();
        let arg_strs: Vec<String> = arg_names.iter().map(|n| n.to_string()).collect();
        let ret = entry.ret.clone().unwrap_or_else(|| syn::parse_quote!(()));
        descs.push(quote! {
            #p::MethodDesc {
                name: #name_str,
                kind: #kind,
                args: &[#(#p::ArgDesc { name: #arg_strs, ty: <#arg_types as #p::AbiType>::TYPE }),*],
                returns: <#ret as #p::AbiType>::TYPE,
            }
        });
        let run = format_ident!("__chroma_run_{}", name);
        let export = format_ident!("__chroma_export_{}", name);
        runners.push(quote! {
            #[doc(hidden)]
            pub fn #run() {
                #p::run::<(#(#arg_types,)*), #ret>(|(#(#arg_names,)*)| #name(#(#arg_names),*))
            }
            #[cfg(target_arch = "wasm32")]
            #[doc(hidden)]
            #[unsafe(export_name = #name_str)]
            pub extern "C" fn #export() {
                #run()
            }
        });
        dispatch_arms.push(quote!(#name_str => { #run(); true }));
    }

    items.push(syn::parse_quote! {
        #[doc(hidden)]
        pub const __CHROMA_METHODS: &[#p::MethodDesc] = &[#(#descs),*];
    });
    items.push(syn::parse_quote! {
        /// This contract's name, ABI and (natively) dispatcher, for `chroma_sdk::testing::MockChain`.
        pub const CONTRACT: ::chroma_sdk::ContractDef = ::chroma_sdk::ContractDef {
            name: #module_name,
            methods: __CHROMA_METHODS,
            dispatch: __chroma_dispatch,
        };
    });
    items.push(syn::parse_quote! {
        #[doc(hidden)]
        #[allow(dead_code)]
        fn __chroma_dispatch(method: &str) -> bool {
            match method {
                #(#dispatch_arms,)*
                _ => false,
            }
        }
    });
    items.push(syn::parse_quote! {
        #[cfg(target_arch = "wasm32")]
        const __CHROMA_ABI_LEN: usize = #p::section_len(__CHROMA_METHODS);
    });
    items.push(syn::parse_quote! {
        /// The ABI description, in the custom section the host reads.
        #[cfg(target_arch = "wasm32")]
        #[unsafe(link_section = #ABI_SECTION)]
        #[used]
        static __CHROMA_ABI: [u8; __CHROMA_ABI_LEN] = #p::encode_section::<__CHROMA_ABI_LEN>(__CHROMA_METHODS);
    });
    for runner in runners {
        items.push(Item::Verbatim(runner));
    }
    Ok(quote!(#module))
}
