//! `wrong-signature`: exports `run` with the wrong type. elihu must refuse it
//! and say which export is mistyped.
wit_bindgen::generate!({
    inline: "
        package elihu:job@0.1.0;
        world job {
            export run: func(context: string) -> string;
        }
    ",
});

struct Wrong;

impl Guest for Wrong {
    fn run(context: String) -> String {
        context
    }
}

export!(Wrong);
