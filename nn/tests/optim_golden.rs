//! The optimizers and learning-rate schedules against PyTorch: every `optim_*` and
//! `schedule_*` fixture of `fixtures/golden/` replayed and compared to 1e-5 relative (see
//! `fixture/mod.rs` for the exact tolerance).

mod fixture;

use fixture::{Fixture, names_with_op};
use rotor_engine::{Result, Tensor};
use rotor_nn::optim::{
    Adam, AdamW, CosineAnnealingLr, LrSchedule, MultiStepLr, Optimizer, Sgd, StepLr,
};
use rotor_nn::param::{ParamVisitor, ParamVisitorMut, join_path};
use rotor_nn::{Module, Param, ParamKind};

/// Relative tolerance of every comparison.
const REL_TOL: f64 = 1e-5;

const OPTIMIZER_FIXTURES: &[&str] = &[
    "optim_adam",
    "optim_adam_weight_decay",
    "optim_adamw",
    "optim_sgd",
    "optim_sgd_momentum",
    "optim_sgd_momentum_weight_decay",
    "optim_sgd_nesterov",
];

const SCHEDULE_FIXTURES: &[&str] = &[
    "schedule_cosine_annealing_lr",
    "schedule_multi_step_lr",
    "schedule_step_lr",
];

/// A model that is one parameter vector.
struct Vector {
    value: Param,
}

impl Module for Vector {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.mul(&self.value.value())
    }

    fn forward_train(&mut self, x: &Tensor) -> Result<Tensor> {
        x.mul(self.value.tensor())
    }

    fn visit_params(&self, prefix: &str, f: &mut ParamVisitor<'_>) {
        f(&join_path(prefix, "value"), &self.value);
    }

    fn visit_params_mut(&mut self, prefix: &str, f: &mut ParamVisitorMut<'_>) {
        f(&join_path(prefix, "value"), &mut self.value);
    }
}

fn f32_meta(f: &Fixture, key: &str) -> f32 {
    f.meta_f64(key) as f32
}

/// The optimizer a fixture describes, refusing options Rotor does not implement.
fn optimizer_of(f: &Fixture) -> Box<dyn Optimizer> {
    assert!(
        !f.meta_bool("maximize"),
        "{}: maximize is not supported",
        f.name()
    );
    let lr = f32_meta(f, "lr");
    let weight_decay = f32_meta(f, "weight_decay");
    match f.meta_str("optimizer") {
        "SGD" => {
            assert_eq!(f.meta_f64("dampening"), 0.0, "{}: dampening", f.name());
            let sgd = Sgd::new(lr)
                .momentum(f32_meta(f, "momentum"))
                .nesterov(f.meta_bool("nesterov"))
                .weight_decay(weight_decay);
            Box::new(sgd)
        }
        name @ ("Adam" | "AdamW") => {
            assert!(
                !f.meta_bool("amsgrad"),
                "{}: amsgrad is not supported",
                f.name()
            );
            let betas = f.meta("betas").as_array().expect("betas is a list");
            let beta = |i: usize| betas[i].as_f64().expect("beta is a number") as f32;
            let eps = f32_meta(f, "eps");
            let decoupled = name == "AdamW" || f.meta_bool("decoupled_weight_decay");
            if decoupled {
                let adamw = AdamW::new(lr).betas(beta(0), beta(1)).eps(eps);
                Box::new(adamw.weight_decay(weight_decay))
            } else {
                let adam = Adam::new(lr).betas(beta(0), beta(1)).eps(eps);
                Box::new(adam.weight_decay(weight_decay))
            }
        }
        other => panic!("{}: unknown optimizer {other}", f.name()),
    }
}

fn check_optimizer(name: &str) {
    let f = Fixture::load(name);
    let steps = f.meta_usize("steps");
    let initial = f.tensor("initial_params");
    let size = initial.numel();
    let grads = f.f32s("grads");
    let (_, want) = f.f64s("params");
    assert_eq!(grads.len(), steps * size, "{name}: grads");
    assert_eq!(want.len(), steps * size, "{name}: params");

    let mut model = Vector {
        value: Param::new(&initial, ParamKind::Weight),
    };
    let mut opt = optimizer_of(&f);
    for t in 0..steps {
        let row = t * size..(t + 1) * size;
        let grad = Tensor::from_slice(&grads[row.clone()], &[size]).expect("gradient row");
        // NOTE: the vector-Jacobian product of a leaf with itself is the given vector, so
        // this hands the optimizer exactly the fixture's gradient.
        let g = model.value.tensor().backward_with(&grad).expect("backward");
        opt.step(&mut model, &g);
        let got = model.value.tensor().as_slice();
        f.check_values(
            &format!("params after step {}", t + 1),
            &want[row],
            got,
            REL_TOL,
        );
    }
}

fn check_schedule(name: &str) {
    let f = Fixture::load(name);
    let base = f32_meta(&f, "base_lr");
    let usize_list = |key: &str| -> Vec<usize> {
        let list = f.meta(key).as_array().expect("a list");
        list.iter()
            .map(|v| v.as_u64().expect("an epoch") as usize)
            .collect()
    };
    let schedule: Box<dyn LrSchedule> = match f.meta_str("scheduler") {
        "StepLR" => {
            Box::new(StepLr::new(base, f.meta_usize("step_size")).gamma(f32_meta(&f, "gamma")))
        }
        "MultiStepLR" => {
            Box::new(MultiStepLr::new(base, usize_list("milestones")).gamma(f32_meta(&f, "gamma")))
        }
        "CosineAnnealingLR" => Box::new(
            CosineAnnealingLr::new(base, f.meta_usize("T_max")).eta_min(f32_meta(&f, "eta_min")),
        ),
        other => panic!("{name}: unknown scheduler {other}"),
    };
    let epochs = f.shape("lr")[0];
    let got: Vec<f32> = (0..epochs).map(|epoch| schedule.lr(epoch)).collect();
    f.check("lr", &got, REL_TOL);
}

#[test]
fn every_optimizer_and_schedule_fixture_is_tested() {
    assert_eq!(names_with_op("optimizer"), OPTIMIZER_FIXTURES);
    assert_eq!(names_with_op("lr_schedule"), SCHEDULE_FIXTURES);
}

#[test]
fn optimizers_follow_pytorch_trajectories() {
    for name in OPTIMIZER_FIXTURES {
        check_optimizer(name);
    }
}

#[test]
fn schedules_match_pytorch() {
    for name in SCHEDULE_FIXTURES {
        check_schedule(name);
    }
}
