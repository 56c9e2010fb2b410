//! The `#[job]` attribute of `elihu-guest`: writes the component export for a job function.

use proc_macro::TokenStream;
use quote::quote;
use syn::{FnArg, ItemFn, ReturnType, parse_macro_input, spanned::Spanned};

/// Marks `fn NAME(context: C, job: &JobInfo) -> Result<O, E>` as the job.
///
/// The function stays callable as written (handy for unit tests); the
/// attribute adds the `run` export of elihu's `job` world, which parses the
/// context JSON into `C`, calls the function and serialises `O` as JSON.
#[proc_macro_attribute]
pub fn job(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        let attr = proc_macro2::TokenStream::from(attr);
        return syn::Error::new(attr.span(), "#[job] takes no arguments")
            .to_compile_error()
            .into();
    }
    let func = parse_macro_input!(item as ItemFn);
    if let Err(e) = check_signature(&func) {
        return e.to_compile_error().into();
    }
    let name = &func.sig.ident;
    quote! {
        #func

        const _: () = {
            struct __ElihuJob;
            impl ::elihu_guest::__private::Guest for __ElihuJob {
                fn run(
                    context: ::std::string::String,
                    info: ::elihu_guest::__private::RawJobInfo,
                ) -> ::std::result::Result<::std::string::String, ::std::string::String> {
                    ::elihu_guest::__private::dispatch(context, info, #name)
                }
            }
            ::elihu_guest::__private::bindings::__export_job!(__ElihuJob);
        };
    }
    .into()
}

fn check_signature(func: &ItemFn) -> syn::Result<()> {
    let sig = &func.sig;
    if sig.asyncness.is_some() {
        return Err(syn::Error::new(sig.asyncness.span(), "a job function cannot be async"));
    }
    if !sig.generics.params.is_empty() {
        return Err(syn::Error::new(sig.generics.span(), "a job function cannot be generic"));
    }
    if sig.inputs.len() != 2 || sig.inputs.iter().any(|a| matches!(a, FnArg::Receiver(_))) {
        return Err(syn::Error::new(
            sig.inputs.span(),
            "a job function takes two arguments: `(context: C, job: &JobInfo)`",
        ));
    }
    if matches!(sig.output, ReturnType::Default) {
        return Err(syn::Error::new(
            sig.span(),
            "a job function returns `Result<O, E>` where O: Serialize and E: Display",
        ));
    }
    Ok(())
}
